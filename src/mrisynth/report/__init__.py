"""mrisynth.report: a run folder -> the study's figures, Table 1, HTML page and Markdown summary.

Modules: `runfiles` (read the run folder), `tables` (metric series, best snapshots), `figures`,
`panel` (Figure 4), `memorisation` (audit summary), `build` (assemble), `render` (HTML/MD).
"""
