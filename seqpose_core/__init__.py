"""SeqPose core: model, data, training and evaluation for category-level 6D pose from RGB video."""

__version__ = '0.1.0'

# NOCS class ids (0 = background). The model's class logits are indexed by class_id - 1.
CLASS_NAMES = ('bottle', 'bowl', 'camera', 'can', 'laptop', 'mug')
NUM_CLASSES = len(CLASS_NAMES)
# Categories whose rotation is evaluated modulo a rotation about their y (up) axis; mugs only when the
# handle is not visible.
SYMMETRIC_CLASS_NAMES = ('bottle', 'bowl', 'can')


def class_name(class_id: int) -> str:
    """NOCS class id (1..6) -> name."""
    if not 1 <= int(class_id) <= NUM_CLASSES:
        raise ValueError(f'class id {class_id} is not a NOCS category id (1..{NUM_CLASSES})')
    return CLASS_NAMES[int(class_id) - 1]


def class_id(name: str) -> int:
    """Category name -> NOCS class id (1..6)."""
    try:
        return CLASS_NAMES.index(name) + 1
    except ValueError:
        raise ValueError(f'unknown category {name!r}; expected one of {CLASS_NAMES}') from None


def lazy_getattr(package, exports):
    """A package's module `__getattr__` resolving `exports` ({name: module}) on first use, so that importing
    the package (for its config section, say) does not import its heavy modules (and torch)."""

    def __getattr__(name):
        if name in exports:
            import importlib

            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f'module {package!r} has no attribute {name!r}')

    return __getattr__
