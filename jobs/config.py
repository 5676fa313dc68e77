"""Compose the hydra configs shipped in :mod:`splatworld.configs`."""

from __future__ import annotations

from importlib.resources import files

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
            # a plain key named like a config group (train-dynamics' ``scenario: push``, a name) is
            # set after composing: hydra would read ``scenario=...`` as choosing the group
            groups = {p.name for p in files("splatworld.configs").iterdir() if p.is_dir() and not p.name.startswith("_")}
            named = [o for o in overrides if o.split("=", 1)[0] in groups]
            late = []
            if named:
                base = compose(config_name=name)
                late = [o for o in named if isinstance(base.get(o.split("=", 1)[0]), (str, int, float)) and "=" in o]
            cfg = compose(config_name=name, overrides=[o for o in overrides if o not in late])
            for override in late:
                key, value = override.split("=", 1)
                cfg[key] = OmegaConf.from_dotlist([f"value={value}"]).value
            return cfg
        except HydraException as exc:
            try:
                valid = sorted(OmegaConf.to_container(compose(config_name=name)).keys())
            except HydraException:
                raise ConfigError(f"no config named {name!r} in splatworld.configs") from exc
            raise ConfigError(f"{name}: {exc} (valid keys: {', '.join(valid)})") from exc
