"""Every output path passes through atomic.py: an OS refusal of the path itself (a folder name
over the file system's 255-byte limit; the same holds for a folder we may not enter) is one
ConfigError naming the path, never a raw OSError, for replaced files, appended logs and
output_errors (whose hint about a file in the way must not raise on such a path itself)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mrisynth import atomic
from mrisynth.errors import ConfigError

LONG = "a" * 300  # over NAME_MAX (255) on Linux file systems: stat/mkdir give ENAMETOOLONG


def _long_path(tmp_path: Path) -> Path:
    return tmp_path / LONG / "out.json"


def test_write_json_under_an_overlong_folder_name_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be written"):
        atomic.write_json(_long_path(tmp_path), {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_append_line_under_an_overlong_folder_name_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be written"):
        atomic.append_line(_long_path(tmp_path), json.dumps({"a": 1}))


def test_output_errors_hint_does_not_raise_on_an_overlong_ancestor(tmp_path):
    target = _long_path(tmp_path)
    with pytest.raises(ConfigError, match="cannot be written") as info, \
            atomic.output_errors(target):
        os.makedirs(target.parent)
    assert "\n" not in str(info.value)


def test_a_file_in_the_way_is_still_named(tmp_path):
    (tmp_path / "f").write_text("x")
    target = tmp_path / "f" / "sub" / "out.json"
    with pytest.raises(ConfigError, match="is a file, not a folder"), \
            atomic.output_errors(target):
        os.makedirs(target.parent)
