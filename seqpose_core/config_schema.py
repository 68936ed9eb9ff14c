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


def parse_dotted_settings(items):
    """['train.lr=1e-3', 'inference.support_plane.enabled=false'] (the command lines' `--set`) -> a nested dict,
    values parsed as YAML scalars."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key or '.' not in key:
            raise ConfigError(f'--set {item!r}: expected SECTION.KEY=VALUE')
        node = overrides
        *parents, leaf = key.split('.')
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f'--set {item!r}: {parent} is set to a value above; it is not a section')
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ConfigError(f'--set {item!r}: the value is not YAML: {error}') from None
        node[leaf] = _number_or_value(parsed)
    return overrides


def _number_or_value(value):
    """YAML 1.1 reads '1e-3' as a string; on a command line it means the number."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value
