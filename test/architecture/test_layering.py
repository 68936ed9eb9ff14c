"""The architecture as code: which layer each module lives in, and a walk over every import (module level and
inside functions) that fails on a cycle or on an import that points up. docs/architecture.md draws the same
layers.

A module may import its own package (`seqpose_core.bag.*` from `seqpose_core.bag.*`) and any module of a
lower layer; `seqpose_core.model` is narrower still (the model, geometry and its own config only), so that the
network can be read, tested and exported on its own.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ('seqpose_core', 'seqpose_ros')

# module prefix -> layer (the longest matching prefix wins); bottom first
LAYERS = {
    # 0: foundations with no knowledge of the rest
    'seqpose_core': 0,
    'seqpose_core.geometry': 0,
    'seqpose_core.config_schema': 0,
    'seqpose_core.safe_pickle': 0,
    'seqpose_core.timing': 0,
    'seqpose_core.measure': 0,
    # 1: plain values and each package's own configuration section
    'seqpose_core.detection': 1,
    'seqpose_core.model.config': 1,
    'seqpose_core.data.config': 1,
    'seqpose_core.train.config': 1,
    'seqpose_core.stages.config': 1,
    # 2: the whole configuration
    'seqpose_core.config': 2,
    # 3: the network, data reading and generation, geometry on detections, drawing
    'seqpose_core.model': 3,
    'seqpose_core.data': 3,
    'seqpose_core.synth': 3,
    'seqpose_core.suppression': 3,
    'seqpose_core.visualize': 3,
    # 4: the runner's stages after the network (one contract: seqpose_core.stages)
    'seqpose_core.stages': 4,
    # 4: the network call under inference.backend (the model, or its exported graphs)
    'seqpose_core.backends': 4,
    # 5: the one data path
    'seqpose_core.runner': 5,
    # 6: evaluation (metrics, the evaluation loop over a runner)
    'seqpose_core.eval': 6,
    # 7: training and the rosbag tools
    'seqpose_core.train': 7,
    'seqpose_core.bag': 7,
    # 8: every subcommand; 9: the entry point that maps names to them
    'seqpose_core.commands': 8,
    'seqpose_core.cli': 9,
    # 10: the ROS 2 package, above the whole library
    'seqpose_ros': 10,
}
# packages whose modules may import only these (besides their own package)
NARROW = {
    'seqpose_core.model': (
        'seqpose_core',
        'seqpose_core.geometry',
        'seqpose_core.config_schema',
        'seqpose_core.timing',
        'seqpose_core.model',
    ),
}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def all_modules():
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob('*.py')}


def lazy_exports(path):
    """A package's `_EXPORTS = {'Name': 'module', ...}` (names resolved on first use), or {}."""
    for node in ast.parse(path.read_text(encoding='utf-8')).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == '_EXPORTS' for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def imported_modules(path, name, modules):
    """Every project module `path` imports, at any depth of its code (lazy imports and the lazy exports of
    packages count)."""
    is_package = path.name == '__init__.py'
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = name.split('.') if is_package else name.split('.')[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            # `from package import submodule` imports the submodule; a lazily exported name, its module
            exports = lazy_exports(modules[base]) if base in modules else {}
            targets = [
                f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else exports.get(alias.name, base)
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition('.')[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(modules=None):
    modules = modules or all_modules()
    graph = {name: imported_modules(path, name, modules) for name, path in modules.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__ first: what those import counts too
    direct = {name: set(targets) for name, targets in graph.items()}
    for name, targets in graph.items():
        for target in list(targets):
            parent = target.rpartition('.')[0]
            while parent:
                if parent in direct and not name.startswith(parent + '.') and parent != name:
                    targets.update(t for t in direct[parent] if t != name)
                parent = parent.rpartition('.')[0]
    return graph


def layer_of(name):
    prefix = max((p for p in LAYERS if name == p or name.startswith(p + '.')), key=len)
    return prefix, LAYERS[prefix]


def package_of(name):
    parts = name.split('.')
    return '.'.join(parts[:2]) if parts[0] == 'seqpose_core' and len(parts) > 1 else parts[0]


def violations(graph):
    found = []
    for name, targets in sorted(graph.items()):
        _, layer = layer_of(name)
        for target in sorted(targets):
            if package_of(target) == package_of(name) and name != 'seqpose_core':
                continue
            target_prefix, target_layer = layer_of(target)
            narrow = next(
                (allowed for package, allowed in NARROW.items() if name == package or name.startswith(package + '.')),
                None,
            )
            if narrow is not None and target_prefix not in narrow and layer_of(target)[0] not in narrow:
                found.append(f'{name} -> {target}: {package_of(name)} may import only {narrow}')
            elif target_layer >= layer and package_of(target) != package_of(name):
                found.append(f'{name} (layer {layer}) -> {target} (layer {target_layer}): points up or sideways')
    return found


def cycles(graph):
    """Every import cycle (as a list of modules), by depth-first search."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = 'active'
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 'active':
                found.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_every_module_has_a_layer():
    assert all(layer_of(name) for name in all_modules())


def test_imports_point_only_down():
    assert violations(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    'source, target',
    [
        ('seqpose_core.model.stsq', 'seqpose_core.runner'),  # the model reaching up to the runner
        ('seqpose_core.train.engine', 'seqpose_core.commands.evaluate'),  # library code depending on a CLI module
        ('seqpose_core.model.memory', 'seqpose_core.config'),  # the model past its own config
        ('seqpose_core.runner', 'seqpose_ros.node'),  # the library depending on the ROS package
    ],
)
def test_an_upward_import_is_caught(source, target):
    graph = import_graph()
    graph[source] = set(graph[source]) | {target}
    assert any(line.startswith(f'{source} ') for line in violations(graph))


def test_a_cycle_is_caught():
    graph = import_graph()
    # model.seqpose imports model.memory: memory importing seqpose back closes a cycle
    graph['seqpose_core.model.memory'] = set(graph['seqpose_core.model.memory']) | {'seqpose_core.model.seqpose'}
    assert any('seqpose_core.model.memory' in cycle for cycle in cycles(graph))


def test_every_layer_prefix_is_in_the_architecture_document():
    """docs/architecture.md draws these layers: each module prefix of the table is named there."""
    text = (ROOT / 'docs' / 'architecture.md').read_text(encoding='utf-8')
    missing = [
        prefix
        for prefix in LAYERS
        if prefix != 'seqpose_core'
        and f'`{prefix.removeprefix("seqpose_core.")}' not in text
        and f'`{prefix}' not in text
    ]
    assert missing == [], f'docs/architecture.md does not name {missing}'
