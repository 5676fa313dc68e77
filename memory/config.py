"""The memory's constants (:class:`MemoryConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from splatworld.errors import ConfigError


@dataclass(frozen=True)
class MemoryConfig:
    """Tunable constants of the memory (distances in metres)."""

    static_voxel: float = 0.02
    object_voxel: float = 0.005
    max_depth: float = 4.0
    static_stride: int = 2
    min_segment_points: int = 12
    track_gate: float = 0.06
    color_gate: float = 0.12
    reid_color_gate: float = 0.08
    depth_margin: float = 0.02
    min_evidence_pixels: int = 10  # footprint pixels (at render_scale) needed to judge visibility
    contradiction_fraction: float = 0.7  # of the footprint's core seen through for a contradiction
    min_in_view_fraction: float = 0.5  # of the footprint's core inside the image for its place to be "in view"
    render_scale: float = 0.5
    icp_max_distance: float = 0.02
    min_register_points: int = 30  # a model of fewer voxels is too small to register against
    sliver_fraction: float = 0.5  # a segment spanning less of the object's size is neither registered nor fused (tracking.py)
    fuse_max_rmse: float = 0.004  # a tracked view is fused into its object's model only if registered this well
    carve_margin: float = 0.01  # a model voxel this far in front of the depth seen through it is free space
    still_translation: float = 0.002
    still_rotation_deg: float = 1.0
    # a registered move is taken only if the view fits it better than the remembered pose by this many
    # noise^2 (tracking.motion_evidence): fitting 6 parameters to a still object's noise gains about 6
    min_motion_evidence: float = 25.0
    # a registration from the remembered pose is taken over one from the predicted motion when its share
    # of points on the model is at most this much lower and its inlier RMSE at most this share higher
    still_fitness_margin: float = 0.02
    still_rmse_margin: float = 0.05
    belief_decay: float = 0.5
    agent_reach: float = 0.08  # agent radius plus margin: objects farther from it are assumed still
    # model points inside the agent that show it stepped into the object (tracking.push_distance)
    agent_contact_points: int = 5
    agent_settle: float = 0.5  # s: an agent at rest this long pushes nothing (objects left sliding are tracked on)
    near_model: float = 0.04  # points this close to a still object's model are taken as its new parts
    max_stretch: float = 0.015  # ...unless they would make its largest size this much larger
    displace_after: int = 3
    fall_depth: float = 0.02  # an unseen object last registered this far below the table top, beyond its edge, fell
    static_refresh_frames: int = 10
    # static pixels within static_edge_width pixels of the near side of a depth jump larger than static_edge_jump
    # times their depth are not fused into the scaffold (segmentation.depth_edge_pixels). Under Kinect noise they
    # grow every occluder by a rim that hides what stands just behind it (`long` seed 2: the teddy behind a box
    # drawn with 11-18 of its 34 visible pixels hidden, 3-5 with these); seen from elsewhere, the same surface lies
    # inside the silhouette. None fuses them all
    static_edge_jump: float | None = 0.05
    static_edge_width: int = 2
    # the static scaffold is fused inside this box (x0, y0, z0, x1, y1, z1), like a TSDF volume:
    # surfaces far from the workspace would grow the map without ever mattering
    workspace: tuple = (-2.0, -2.0, -0.5, 2.0, 2.0, 2.5)
    # std of a static voxel's splat (voxels.VoxelGrid.to_gaussians), in voxels: inside a surface, where it
    # overlaps its neighbours to close the gaps between them, and across an edge of the surface, where
    # that overlap draws an occluder's edge over the object just behind it. Measured on `long` seed 0
    # (54 views over 9 minutes): object pixels wrongly hidden by the scaffold 3.3% with (0.6, none),
    # 1.7% with these; static PSNR off the floor 25.2 -> 26.5 dB
    static_splat_scale: float = 0.5
    static_edge_scale: float | None = 0.25
    # std of an object voxel's splat, in voxels: in the memory's own render-and-compare (its association
    # and visibility gates were tuned with it), and in what the memory shows (tighter: at 256 px the
    # wider splat draws a one-pixel rim around every object)
    compare_splat_scale: float = 0.8
    object_splat_scale: float = 0.3
    # an object voxel is drawn for the eye only if its weight is at least this share of the largest among it and its
    # neighbours (voxels.VoxelGrid.support: depth noise scattered beside a surface); 0 draws every voxel
    draw_min_support: float = 0.2
    # screen-space blur (px^2) of the objects the memory shows. The renderer's default (gsplat's 0.3)
    # anti-aliases sparse splats; object voxels are about a pixel apart at 256 px and need little, and
    # with 0.3 every object grows a pixel all round (masks 1.3-1.5x the true silhouette, IoU 0.63-0.66;
    # 0.85-0.9 median with these two values on the occlusion, out_of_view and long presets)
    object_eps2d: float = 0.03
    # fade the ground's pattern into its mean colour where a pixel covers much of a period (a real
    # camera averages a far floor over its pixels); off, it is point-sampled, as PyBullet renders it
    ground_antialias: bool = False
    keyframe_spacing: float = 0.1  # view distance (m + rad) between keyframes
    keyframe_capacity: int = 256
    keyframe_reach: float = 0.3  # farthest keyframe used to draw a view
    keyframe_pixel_scale: float = 0.25  # a keyframe pixel's Gaussian std, in its own pixels
    # draw the nearest keyframe's static pixels over the scaffold (SceneMemory.render): stored photographs,
    # exact at a revisited pose. Over refined splats they make views worse (`long` seed 0, 60 held-out
    # views: 34.7 dB without, 30.9 dB with), so the memory shows only its splats by default
    paste_keyframes: bool = False
    # photometric refinement steps (memory.refine) run after each new keyframe while observing; 0 = none
    refine_steps_per_keyframe: int = 2
    # where segments come from: "instances" (the frame's instance masks; frames without them are
    # segmented from geometry) or "geometry" (always from geometry: memory/segmentation.py)
    segmentation: str = "instances"
    plane_tolerance: float = 0.012  # points this close to the support plane are the table
    # the support plane's largest tilt (a table top is level). With 18 degrees, a plane of the
    # scaffold tilted by 18 degrees and higher than the table top was taken for it for 20 frames
    # on `long` seed 1 (Kinect noise), and an object under it, "table" there, was fused into the
    # scaffold for good
    support_max_tilt_deg: float = 5.0
    # m^2: a support plane is a surface this large in one piece. On `long` seed 1 (Kinect noise) the
    # third plane RANSAC found, 21 cm above the table and tilted 3.8 degrees, ran through a shelf's
    # board (0.09 m^2), a box occluder's top (0.04 m^2) and a wall's; taken for the table (the highest
    # level plane), it called every object on the table sunk, and an unseen one beyond its region fell
    # to the floor. The table's piece: 1.48 m^2
    support_min_area: float = 0.25
    object_max_height: float = 0.15  # a segment rising higher above the table is static (an occluder)
    object_max_size: float = 0.4  # a segment spanning more along x or y is a raised strip of the table: unexplained
    segment_voxel: float = 0.01  # cell of the connectivity that splits the rest into objects
    static_margin: float = 0.01  # points this close to a static voxel's surface are static scene
    part_reach: float = 0.02  # an unmatched segment this close to a matched track's model is more of it
    agent_radius: float = 0.025  # the agent's radius and height (the episode's agent_shape): left out of segments,
    # and no object's model overlaps it (tracking.AgentMotion.push_out)
    agent_height: float = 0.1
    min_depth_fraction: float = 0.02  # a frame with depth on fewer pixels is depthless (memory.depthless_frames)
    # camera poses: "given" (each frame's transform_matrix) or "estimate" (memory/camera_tracking.py: the
    # first frame's given pose fixes the world frame; RGB-D odometry against reference frames places the rest)
    poses: str = "given"
    pose_reference_spacing: float = 0.08  # a tracked frame this far (m + rad) from every reference becomes one
    pose_reference_reach: float = 0.3  # frames are tracked against a reference within this view distance
    pose_reference_capacity: int = 300  # about 0.5 MB each
    pose_iterations: tuple = (10, 5, 3)  # odometry's Gauss-Newton steps per pyramid level, coarsest first
    pose_depth_difference: float = 0.03  # odometry pairs points at most this far apart in depth
    pose_static_after: float = 2.0  # s: older references are matched on their static pixels alone (objects move)
    # the odometry's information matrix with its smallest eigenvalue under this share of its largest: a view
    # of a far plane, which fixes the camera's turn but not its centre (kept from the constant-velocity guess)
    pose_degenerate_ratio: float = 0.01
    # under this share the view is nearly degenerate: a camera turning in place (its constant-velocity guess
    # turns faster than pose_turning_speed, degrees/s, and moves its centre slower than pose_still_speed, m/s)
    # goes on turning about its last centre when that aligns the frame to within pose_turn_margin (relative)
    # of the 6-DoF result (camera_tracking: alignment_cost)
    pose_ambiguous_ratio: float = 0.04
    pose_turning_speed: float = 10.0
    pose_still_speed: float = 0.05
    pose_turn_margin: float = 0.05
    pose_min_overlap: float = 0.3  # odometry must pair this share of the frame's depth pixels with the reference's
    pose_relocalise_candidates: int = 4  # references tried (most alike first) for each frame while lost
    # odometry farther than this from its constant-velocity guess (m, degrees) took a wrong minimum
    pose_max_correction: float = 0.08
    pose_max_correction_deg: float = 8.0
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.segmentation not in ("instances", "geometry"):
            raise ConfigError(f"memory segmentation must be 'instances' or 'geometry', got {self.segmentation!r}")
        if self.poses not in ("given", "estimate"):
            raise ConfigError(f"memory poses must be 'given' or 'estimate', got {self.poses!r}")
        if self.static_edge_width < 0:
            raise ConfigError(f"memory static_edge_width must be at least 0 pixels, got {self.static_edge_width}")
        if not 0.0 <= self.draw_min_support <= 1.0:
            raise ConfigError(f"memory draw_min_support must be in [0, 1], got {self.draw_min_support}")
        if self.agent_contact_points < 1:
            raise ConfigError(f"memory agent_contact_points must be at least 1, got {self.agent_contact_points}")
        box = tuple(float(v) for v in self.workspace)
        if len(box) != 6 or not all(a < b for a, b in zip(box[:3], box[3:])):
            raise ConfigError(f"memory workspace must be (x0, y0, z0, x1, y1, z1) with x0 < x1 etc., got {box}")
        object.__setattr__(self, "workspace", box)
