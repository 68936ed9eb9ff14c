"""Dataclass configs <-> plain dicts (YAML): the generic part of configuration, below every package.

`seqpose_core.config` assembles the sections; `model/checkpoint.py` rebuilds a ModelConfig with `from_dict`
without knowing about the other sections.
"""
import dataclasses
import typing


class ConfigError(ValueError):
    pass


def from_dict(cls, values, where='config'):
    """Build dataclass `cls` from a (nested) dict, rejecting unknown keys with their full path."""
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ConfigError(f'{where}: expected a mapping, got {type(values).__name__}')
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f'{where}: unknown key(s) {unknown}; known: {sorted(fields)}')
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, f'{where}.{name}')
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def to_dict(config):
    return dataclasses.asdict(config)


def merge_dicts(base, update):
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_dicts(merged[key], value)
        else:
            merged[key] = value
    return merged
