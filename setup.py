"""SeqPose: one ament_python package (`colcon build`) that also installs with plain `pip install -e .`."""

import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'seqpose_ros'
# folders without __init__.py that ship files: package -> patterns
DATA_PACKAGES = {
    'seqpose_core.configs': ['*.yaml'],
    'seqpose_core.weights': ['*.pt', '*.md'],
    'seqpose_core.synth.shaders': ['*.glsl'],
}


def data_files():
    """ament index marker, package.xml, and launch/ + config/ under share/seqpose_ros."""
    files = [
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
    ]
    for folder in ('launch', 'config'):
        paths = sorted(p for p in glob(os.path.join(folder, '*')) if os.path.isfile(p))
        if paths:
            files.append((os.path.join('share', PACKAGE, folder), paths))
    return files


setup(
    name=PACKAGE,
    version='0.1.0',
    description='SeqPose: category-level 6D object pose and size from monocular RGB video (ROS 2 + PyTorch)',
    long_description=open('README.md', encoding='utf-8').read() if os.path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    # the data folders are listed as packages of their own (setuptools warns about importable folders that
    # are not), with their files as package data
    packages=find_packages(include=['seqpose_core', 'seqpose_core.*', 'seqpose_ros', 'seqpose_ros.*'])
    + [name for name in DATA_PACKAGES if os.path.isdir(name.replace('.', os.sep))],
    package_data={'seqpose_core': ['examples/*', 'examples/**/*'], **DATA_PACKAGES},
    include_package_data=True,
    data_files=data_files(),
    # rclpy and the ROS message packages come from ROS (system install, or the pinned Kilted wheels in
    # requirements/ros-kilted.txt): pip cannot know which, so they are not listed here.
    install_requires=[
        'torch>=2.1',
        'numpy>=1.24',
        'scipy>=1.10',
        'opencv-python-headless>=4.8',
        'PyYAML>=6.0',
        'tqdm>=4.60',
        'matplotlib>=3.7',
    ],
    extras_require={
        'synth': ['trimesh>=4.0', 'moderngl>=5.8'],
        'bags': ['rosbags>=0.10'],
        'weights': ['safetensors>=0.4'],
        # inference.backend onnxruntime and `seqpose export` (onnxruntime-gpu serves CUDA / TensorRT instead)
        'onnx': ['onnxruntime>=1.18', 'onnx>=1.16', 'onnxscript>=0.3'],
        'test': ['pytest>=7', 'mcap>=1.1', 'mcap-ros2-support>=0.5'],
    },
    zip_safe=False,
    entry_points={
        'console_scripts': [
            'seqpose = seqpose_core.cli:main',
            'seqpose_node = seqpose_ros.node:main',
        ],
    },
)
