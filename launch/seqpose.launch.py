"""Start seqpose_node (and optionally RViz).

    ros2 launch seqpose_ros seqpose.launch.py image_topic:=/camera/color/image_raw \
        camera_info_topic:=/camera/color/camera_info device:=cuda:0
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = (
    ('image_topic', '/camera/color/image_raw', 'sensor_msgs/Image input (its /compressed is used with '
                                               'image_transport: compressed in the params file)'),
    ('camera_info_topic', '/camera/color/camera_info', 'sensor_msgs/CameraInfo of the image'),
    ('namespace', '', 'Namespace of the node and its outputs (detections, markers, debug_image)'),
    ('checkpoint', '', "SeqPose checkpoint; '' = the embedded default model"),
    ('device', 'cpu', 'cpu | cuda | cuda:N (falls back to CPU with a warning)'),
    ('params_file', PathJoinSubstitution([FindPackageShare('seqpose_ros'), 'config', 'seqpose.yaml']),
     'Parameter file (ros__parameters under /**)'),
    ('use_sim_time', 'false', 'Use /clock (bag replay with --clock)'),
    ('launch_rviz', 'false', 'Also start RViz with config/seqpose.rviz'),
    ('rviz_config', PathJoinSubstitution([FindPackageShare('seqpose_ros'), 'config', 'seqpose.rviz']),
     'RViz configuration'),
    ('log_level', 'info', 'debug | info | warn | error | fatal'),
)


def generate_launch_description():
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, default, description in ARGUMENTS]
    image_topic = LaunchConfiguration('image_topic')
    node = Node(
        package='seqpose_ros',
        executable='seqpose_node',
        name='seqpose_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        # the params file first: the launch arguments below override it
        parameters=[
            LaunchConfiguration('params_file'),
            {
                'checkpoint': LaunchConfiguration('checkpoint'),
                'device': LaunchConfiguration('device'),
                'use_sim_time': PythonExpression(["'", LaunchConfiguration('use_sim_time'), "'.lower() == 'true'"]),
            },
        ],
        remappings=[
            ('image', image_topic),
            ('image/compressed', [image_topic, '/compressed']),
            ('camera_info', LaunchConfiguration('camera_info_topic')),
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
    )
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        name='seqpose_rviz',
        namespace=LaunchConfiguration('namespace'),
        arguments=['-d', LaunchConfiguration('rviz_config')],
        parameters=[{'use_sim_time': PythonExpression(["'", LaunchConfiguration('use_sim_time'),
                                                       "'.lower() == 'true'"])}],
        condition=IfCondition(LaunchConfiguration('launch_rviz')),
        output='screen',
    )
    return LaunchDescription(arguments + [node, rviz])
