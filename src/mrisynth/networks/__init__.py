"""StyleGAN2(-ADA) networks in PyTorch: skip G, resnet D, safetensors I/O (arXiv 1912.04958)."""

from mrisynth.networks.config import NetworkConfig, network_config_from_preset
from mrisynth.networks.discriminator import Discriminator, build_discriminator
from mrisynth.networks.generator import Generator, build_generator
from mrisynth.networks.serialization import (
    build_network,
    load_network,
    load_network_tensors,
    network_description,
    network_tensors,
    read_network_metadata,
    save_network,
)

__all__ = [
    "Discriminator",
    "Generator",
    "NetworkConfig",
    "build_discriminator",
    "build_generator",
    "build_network",
    "load_network",
    "load_network_tensors",
    "network_config_from_preset",
    "network_description",
    "network_tensors",
    "read_network_metadata",
    "save_network",
]
