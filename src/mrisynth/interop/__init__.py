"""Interoperability with NVIDIA's StyleGAN2-ADA tools.

- `pickle_scan`: pass 1 over an untrusted pickle (every instruction checked, the stack replayed
  with value kinds) before anything is built.
- `nvidia_pickle`: a restricted unpickler for stylegan2-ada-pytorch `network-snapshot-*.pkl`
  files; it rebuilds tensors and plain containers and turns NVIDIA's persistent-class records into
  inert data, never importing or running code from the file.
- `nvidia_networks`: NVIDIA's init kwargs and parameter names -> `NetworkConfig` and our
  state dicts (up-sampling kernels flipped to our orientation).
- `nvidia_import`: a whole pickle -> a mrisynth snapshot (`mrisynth import-nvidia`).
- `export_model`: a generator as one ONNX or TorchScript file (`mrisynth export`).
"""
