"""Launch cigocc_node on a KITTI-style camera rig (and RViz on request).

    ros2 launch cigocc_ros cigocc.launch.py mode:=stereo camera:=gray weights:=/path/model.safetensors
    ros2 launch cigocc_ros cigocc.launch.py use_sim_time:=true rviz:=true   # with ros2 bag play --clock
    ros2 launch cigocc_ros cigocc.launch.py left_transport:=compressed      # <left_image>/compressed

Topics default to the names `cigocc kitti-to-bag` and kitti2bag write
(/kitti/camera_<camera>_<side>/image_rect and .../camera_info); override them with the
left_image/left_info/right_image/right_info arguments (with left_transport:=compressed the node
listens on <left_image>/compressed, image_transport's name). Every node parameter not set here comes
from the `config` file (config/cigocc.yaml by default). docs/node.md describes all of it.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from cigocc_ros import resources  # the one lookup of the package's files (share/, checkout)


def generate_launch_description():
    camera = LaunchConfiguration("camera")
    args = [
        DeclareLaunchArgument("mode", default_value="mono", choices=["mono", "stereo"],
                              description="mono: left camera only; stereo: left + right with stereo depth"),
        DeclareLaunchArgument("weights", default_value="",
                              description="checkpoint (.safetensors); empty = the shipped weights"),
        DeclareLaunchArgument("config", default_value=str(resources.node_params_file()),
                              description="ROS parameter file of the node"),
        DeclareLaunchArgument("device", default_value="auto",
                              description="inference device: auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("backend", default_value="torch", choices=["torch", "onnxruntime", "auto"],
                              description="torch; onnxruntime with weights:=<file from cigocc export>; auto: onnxruntime "
                                          "when an export of the weights is present"),
        DeclareLaunchArgument("rviz", default_value="false", choices=["true", "false"],
                              description="start RViz with rviz/cigocc.rviz"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="use /clock (bag replay with ros2 bag play --clock)"),
        DeclareLaunchArgument("camera", default_value="color", choices=["color", "gray"],
                              description="which KITTI camera pair the default topic names point at"),
        DeclareLaunchArgument("left_image", default_value=["/kitti/camera_", camera, "_left/image_rect"],
                              description="left image topic"),
        DeclareLaunchArgument("left_info", default_value=["/kitti/camera_", camera, "_left/camera_info"],
                              description="left camera_info topic"),
        DeclareLaunchArgument("right_image", default_value=["/kitti/camera_", camera, "_right/image_rect"],
                              description="right image topic (stereo)"),
        DeclareLaunchArgument("right_info", default_value=["/kitti/camera_", camera, "_right/camera_info"],
                              description="right camera_info topic (stereo)"),
        DeclareLaunchArgument("left_transport", default_value="raw", choices=["raw", "compressed"],
                              description="raw: left_image (Image); compressed: left_image/compressed "
                                          "(CompressedImage, JPEG/PNG)"),
        DeclareLaunchArgument("right_transport", default_value="raw", choices=["raw", "compressed"],
                              description="the same for right_image (stereo)"),
    ]
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    node = Node(
        package="cigocc_ros",
        executable="cigocc_node",
        name="cigocc_node",
        output="screen",
        parameters=[
            LaunchConfiguration("config"),
            {
                "weights": ParameterValue(LaunchConfiguration("weights"), value_type=str),
                "device": LaunchConfiguration("device"),
                "backend": LaunchConfiguration("backend"),
                "stereo": ParameterValue(PythonExpression(["'", LaunchConfiguration("mode"), "' == 'stereo'"]),
                                         value_type=bool),
                "use_sim_time": use_sim_time,
                "left_transport": LaunchConfiguration("left_transport"),
                "right_transport": LaunchConfiguration("right_transport"),
            },
        ],
        remappings=[
            ("left/image", LaunchConfiguration("left_image")),
            ("left/camera_info", LaunchConfiguration("left_info")),
            ("right/image", LaunchConfiguration("right_image")),
            ("right/camera_info", LaunchConfiguration("right_info")),
        ],
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", str(resources.rviz_layout_file())],
        parameters=[{"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(args + [node, rviz])
