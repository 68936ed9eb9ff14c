"""Loading pickles from strangers without letting them run code.

Result pickles and `*_label.pkl` files are written by other people's programs. A plain `pickle.load` would
execute whatever callable the file names; this unpickler admits only plain containers, scalars and numpy
arrays/dtypes (what those files hold), and refuses anything else by name.
"""

import io
import pickle

import numpy as np

_ALLOWED = {
    ('builtins', 'dict'),
    ('builtins', 'list'),
    ('builtins', 'tuple'),
    ('builtins', 'set'),
    ('builtins', 'frozenset'),
    ('builtins', 'str'),
    ('builtins', 'bytes'),
    ('builtins', 'bytearray'),
    ('builtins', 'int'),
    ('builtins', 'float'),
    ('builtins', 'complex'),
    ('builtins', 'bool'),
    ('builtins', 'slice'),
    ('builtins', 'range'),
    ('collections', 'OrderedDict'),
    ('collections', 'defaultdict'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.numeric', '_frombuffer'),
    ('numpy._core.numeric', '_frombuffer'),
    ('_codecs', 'encode'),
}


class UnsafePickleError(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        # numpy scalar types such as numpy.float32 are pickled by reference to their class
        if (
            module == 'numpy'
            and isinstance(getattr(np, name, None), type)
            and issubclass(getattr(np, name), np.generic)
        ):
            return getattr(np, name)
        if module in ('numpy.dtypes', 'numpy._core.dtypes') and name.endswith('DType'):
            return super().find_class(module, name)
        raise UnsafePickleError(f'refusing to load {module}.{name}: only numpy arrays and plain containers are allowed')


def safe_load(path, what='pickle'):
    """Load a pickle file with the restricted unpickler; every failure names the file."""
    try:
        with open(path, 'rb') as stream:
            data = stream.read()
    except OSError as error:
        raise ValueError(f'{path}: cannot read {what}: {error.strerror or error}') from None
    return safe_loads(data, source=str(path), what=what)


def safe_loads(data: bytes, source='<bytes>', what='pickle'):
    if not data:
        raise ValueError(f'{source}: empty file, expected a {what}')
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding='latin1').load()
    except UnsafePickleError as error:
        raise ValueError(f'{source}: {error}') from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        UnicodeDecodeError,
    ) as error:
        raise ValueError(f'{source}: corrupt or truncated {what} ({type(error).__name__}: {error})') from None
