"""Starting `seqpose_node` from Python (the benchmarks, the tests, your own tools): the command, its environment,
and the package's `config/` folder. (`seqpose bag live` starts the node by program name with the same command
rule: seqpose_core must not import the ROS package, test/test_layering.py.)

`config/` is found through the ament index when the package was installed into an ament prefix (`colcon build`,
a ROS install: `<prefix>/share/seqpose_ros/config`), else beside the sources (`pip install -e .`), else under the
pip install prefix (`<sys.prefix>/share/seqpose_ros/config`, where a plain `pip install .` puts data_files).
Nothing here starts DDS.
"""

import os
import sys
from pathlib import Path

PACKAGE = 'seqpose_ros'
SHM_PROFILE_NAME = 'fastdds_shm_profile.xml'


def share_directory():
    """The package's share directory from the ament index (AMENT_PREFIX_PATH), or None when the package is
    not in any ament prefix (or ament_index_python is not installed)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, ValueError, KeyError, OSError):
        return None


def config_candidates(name):
    """Where config/<name> is looked for, in order."""
    candidates = []
    share = share_directory()
    if share is not None:
        candidates.append(share / 'config' / name)
    candidates.append(Path(__file__).resolve().parents[1] / 'config' / name)  # source tree (pip -e)
    candidates.append(Path(sys.prefix) / 'share' / PACKAGE / 'config' / name)  # pip install .
    return candidates


def config_path(name):
    """The first existing config/<name>; FileNotFoundError naming every place looked at."""
    candidates = config_candidates(name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f'{PACKAGE}: config/{name} not found; looked in: {", ".join(map(str, candidates))}')


def node_command(*ros_args):
    """The `seqpose_node` console script next to this interpreter (the venv's own, never another venv's: the
    pip ROS wheels set LD_LIBRARY_PATH per venv), else `python -m seqpose_ros.node` with this interpreter
    (a colcon install puts the script under lib/seqpose_ros, outside PATH)."""
    script = Path(sys.executable).with_name('seqpose_node')
    base = [str(script)] if script.exists() else [sys.executable, '-m', 'seqpose_ros.node']
    return base + ['--ros-args', *ros_args]


def node_environment(fastdds_profile='', localhost=True, base=None):
    """Environment for a node process: unbuffered logs; `localhost`: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
    (a local replay needs nothing beyond this machine); `fastdds_profile`: '' = stock Fast DDS (any inherited
    FASTDDS_DEFAULT_PROFILES_FILE removed), 'shm' = the shipped shared-memory profile, else a file path."""
    env = dict(os.environ if base is None else base)
    if localhost:
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.pop('FASTDDS_DEFAULT_PROFILES_FILE', None)
    if fastdds_profile:
        profile = config_path(SHM_PROFILE_NAME) if fastdds_profile == 'shm' else Path(fastdds_profile)
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(profile)
    env.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_LOGGING_BUFFERED_STREAM'] = '0'
    return env


def network_interfaces():
    """Interface names from /proc/net/dev (first two lines are headers)."""
    with open('/proc/net/dev', encoding='ascii') as handle:
        return [line.split(':', 1)[0].strip() for line in handle.readlines()[2:] if ':' in line]


def loopback_isolation_problem():
    """'' when DDS traffic cannot leave this machine's loopback: a private network namespace holding only
    `lo`, and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST. Otherwise the reason (tests skip with it)."""
    interfaces = network_interfaces()
    if interfaces != ['lo']:
        return (
            f'DDS tests run only inside a private network namespace with loopback only (found interfaces '
            f"{interfaces}); run: unshare -n bash -c 'ip link set lo up && "
            "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST .venv/bin/python -m pytest test/test_ros_*.py'"
        )
    if os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE') != 'LOCALHOST':
        return (
            'DDS tests need ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (got '
            f'{os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")!r})'
        )
    return ''
