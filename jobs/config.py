"""Compose the hydra configs shipped in :mod:`splatworld.configs`."""

from __future__ import annotations

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from splatworld.errors import ConfigError


def load_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The packaged config ``name`` with ``key=value`` overrides applied.

    Raises:
        ConfigError: unknown config name, unknown key or malformed override; the
            message names it and lists the valid keys.
    """
    with initialize_config_module(config_module="splatworld.configs", version_base=None):
        try:
            return compose(config_name=name, overrides=list(overrides))
        except HydraException as exc:
            try:
                valid = sorted(OmegaConf.to_container(compose(config_name=name)).keys())
            except HydraException:
                raise ConfigError(f"no config named {name!r} in splatworld.configs") from exc
            raise ConfigError(f"{name}: {exc} (valid keys: {', '.join(valid)})") from exc
