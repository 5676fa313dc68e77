"""Hydra configs shipped with the package (``initialize_config_module("splatworld.configs")``)."""
