"""The sensors of the synthetic SemanticKITTI, by ray casting (raycast.py) a Scene: KITTI's three
camera set-ups (the published calib.txt values), the colour stereo camera's shading and an
HDL-64E-like LiDAR.
"""
from __future__ import annotations

import numpy as np

from ...geometry import CameraModel
from .raycast import GROUND, SKY, camera_blocks, cast, lidar_blocks, surface_normals
from .scene import (
    BUILDING,
    FENCE,
    OTHER_GROUND,
    OTHER_VEHICLE,
    PARKING,
    PAT_BARK,
    PAT_FOLIAGE,
    PAT_SLATS,
    PAT_WINDOWS,
    ROAD,
    SIDEWALK,
    TERRAIN,
    Scene,
)

LIDAR_ELEVATIONS_DEG = (2.0, -24.8)  # HDL-64E vertical field of view
LIDAR_BEAMS = 64
LIDAR_AZIMUTHS = 2048
LIDAR_MAX_RANGE = 80.0
LIDAR_RANGE_NOISE = 0.01  # metres, 1 sigma
SKY_CLASS = 0  # class id of sky pixels: empty space, as docs/data.md defines for teacher masks

# Per class: albedo of ground bands, texture amplitudes (low-frequency blotches, grain) and the
# grain's cells per metre; reflectance of the LiDAR returns.
_GROUND_ALBEDO = np.zeros((20, 3), np.float32)
_GROUND_ALBEDO[ROAD] = (0.30, 0.30, 0.32)
_GROUND_ALBEDO[PARKING] = (0.40, 0.39, 0.40)
_GROUND_ALBEDO[SIDEWALK] = (0.62, 0.59, 0.55)
_GROUND_ALBEDO[OTHER_GROUND] = (0.50, 0.44, 0.36)
_GROUND_ALBEDO[TERRAIN] = (0.34, 0.44, 0.19)
_TEX = np.tile(np.array([[0.08, 0.08, 10.0]], np.float32), (20, 1))
_TEX[[ROAD, PARKING]] = (0.15, 0.30, 14.0)
_TEX[SIDEWALK] = (0.10, 0.18, 9.0)
_TEX[OTHER_GROUND] = (0.25, 0.40, 10.0)
_TEX[TERRAIN] = (0.40, 0.55, 11.0)
_TEX[BUILDING] = (0.12, 0.10, 6.0)
_TEX[FENCE] = (0.10, 0.20, 8.0)
_TEX[15] = (0.30, 0.50, 7.0)  # vegetation
_TEX[16] = (0.15, 0.40, 12.0)  # trunk
_REFLECTANCE = np.full(20, 0.3, np.float32)
_REFLECTANCE[[ROAD, PARKING]] = 0.22
_REFLECTANCE[[SIDEWALK, OTHER_GROUND]] = 0.3
_REFLECTANCE[TERRAIN] = 0.45
_REFLECTANCE[15] = 0.5
_REFLECTANCE[[1, 4, 5]] = 0.15
_REFLECTANCE[19] = 0.9  # retro-reflective sign plates
_SKY_HORIZON = np.array([0.84, 0.87, 0.91], np.float32)
_SKY_ZENITH = np.array([0.38, 0.55, 0.83], np.float32)
_FOG_DISTANCE = 450.0


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------
def _row(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split()]).reshape(3, 4)


# KITTI odometry's three camera set-ups, as published in its calib.txt files (sequences 00-02,
# 03 and 04-21; ../shared/kitti_samples has copies): image size (H, W), P0-P3 and Tr.
KITTI_CALIBRATIONS: tuple[tuple[tuple[int, int], dict[str, np.ndarray]], ...] = (
    ((376, 1241), {
        "P0": _row("718.856 0 607.1928 0 0 718.856 185.2157 0 0 0 1 0"),
        "P1": _row("718.856 0 607.1928 -386.1448 0 718.856 185.2157 0 0 0 1 0"),
        "P2": _row("718.856 0 607.1928 45.38225 0 718.856 185.2157 -0.1130887 0 0 1 0.003779761"),
        "P3": _row("718.856 0 607.1928 -337.2877 0 718.856 185.2157 2.369057 0 0 1 0.004915215"),
        "Tr": _row("4.276802385584e-04 -9.999672484946e-01 -8.084491683471e-03 -1.198459927713e-02 "
                   "-7.210626507497e-03 8.081198471645e-03 -9.999413164504e-01 -5.403984729748e-02 "
                   "9.999738645903e-01 4.859485810390e-04 -7.206933692422e-03 -2.921968648686e-01"),
    }),
    ((375, 1242), {
        "P0": _row("721.5377 0 609.5593 0 0 721.5377 172.854 0 0 0 1 0"),
        "P1": _row("721.5377 0 609.5593 -387.5744 0 721.5377 172.854 0 0 0 1 0"),
        "P2": _row("721.5377 0 609.5593 44.85728 0 721.5377 172.854 0.2163791 0 0 1 0.002745884"),
        "P3": _row("721.5377 0 609.5593 -339.5242 0 721.5377 172.854 2.199936 0 0 1 0.002729905"),
        "Tr": _row("2.347736981471e-04 -9.999441545438e-01 -1.056347781105e-02 -2.796816941295e-03 "
                   "1.044940741659e-02 1.056535364138e-02 -9.998895741176e-01 -7.510879138296e-02 "
                   "9.999453885620e-01 1.243653783865e-04 1.045130299567e-02 -2.721327964059e-01"),
    }),
    ((370, 1226), {
        "P0": _row("707.0912 0 601.8873 0 0 707.0912 183.1104 0 0 0 1 0"),
        "P1": _row("707.0912 0 601.8873 -379.8145 0 707.0912 183.1104 0 0 0 1 0"),
        "P2": _row("707.0912 0 601.8873 46.88783 0 707.0912 183.1104 0.1178601 0 0 1 0.006203223"),
        "P3": _row("707.0912 0 601.8873 -333.4597 0 707.0912 183.1104 1.93013 0 0 1 0.003318498"),
        "Tr": _row("-1.857739385241e-03 -9.999659513510e-01 -8.039975204516e-03 -4.784029760483e-03 "
                   "-6.481465826011e-03 8.051860151134e-03 -9.999466081774e-01 -7.337429464231e-02 "
                   "9.999773098287e-01 -1.805528627661e-03 -6.496203536139e-03 -3.339968064433e-01"),
    }),
)


def calibration_index(seed: int) -> int:
    """Which of KITTI_CALIBRATIONS a sequence of `seed` uses: seed mod 3, so consecutive seeds
    (the default dataset's) cycle through all three."""
    return int(seed) % len(KITTI_CALIBRATIONS)


def kitti_calibration(index: int = 0) -> tuple[tuple[int, int], dict[str, np.ndarray]]:
    """(image size (H, W), `calib.txt` entries P0..P3 (3, 4) and Tr (3, 4) velodyne -> cam0) of
    KITTI set-up `index` (copies: the caller may modify them)."""
    size, calib = KITTI_CALIBRATIONS[index]
    return size, {k: v.copy() for k, v in calib.items()}


def scaled_camera(cam: CameraModel, scale: float) -> CameraModel:
    """The same camera with its image resized by `scale` (pixel centres at integer coordinates)."""
    if scale == 1.0:
        return cam
    K = cam.K.copy()
    K[:2] *= scale
    H, W = cam.image_size
    return CameraModel(K, cam.T_cam_grid, (int(round(H * scale)), int(round(W * scale))))


# --------------------------------------------------------------------------------------------
# Texture
# --------------------------------------------------------------------------------------------
def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) float32 from integer lattice coordinates (deterministic, vectorised)."""
    h = (ix.astype(np.uint32) * np.uint32(0x8DA6B343)) ^ (iy.astype(np.uint32) * np.uint32(0xD8163841))
    h ^= iz.astype(np.uint32) * np.uint32(0xCB1AB31F)
    h ^= np.uint32(seed & 0xFFFFFFFF)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return h.astype(np.float32) * np.float32(1.0 / 4294967296.0)


def _cell_noise(p: np.ndarray, freq: np.ndarray | float, seed: int) -> np.ndarray:
    """Piecewise-constant noise (N,) in [0, 1) on cells of 1/freq metres, anchored to the world
    so both cameras and every frame see the same grain."""
    q = np.floor(p * np.asarray(freq, np.float32).reshape(-1, 1)).astype(np.int64)
    return _hash(q[:, 0], q[:, 1], q[:, 2], seed)


def _value_noise(p: np.ndarray, freq: float, seed: int) -> np.ndarray:
    """Smooth (trilinear) lattice noise (N,) in [0, 1) at `freq` lattice cells per metre."""
    q = p * freq
    i = np.floor(q)
    f = q - i
    f = f * f * (3.0 - 2.0 * f)
    i = i.astype(np.int64)
    out = np.zeros(len(p), np.float32)
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1.0 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1.0 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1.0 - f[:, 2]
                out += (wx * wy * wz).astype(np.float32) * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


# --------------------------------------------------------------------------------------------
# Camera
# --------------------------------------------------------------------------------------------
def camera_rays(cam: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions (H, W, 3) in the optical frame and their z components (H, W)."""
    H, W = cam.image_size
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    K = cam.K
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return d, d[..., 2].copy()


def render_camera(scene: Scene, seed: int, cam: CameraModel, rays: tuple[np.ndarray, np.ndarray],
                  T_map_velo: np.ndarray, rng: np.random.Generator):
    """One image of camera `cam` (rays from `camera_rays`) on velodyne pose T_map_velo (4, 4):
    (rgb (H, W, 3) uint8, ray lengths t (H, W), hit ids (H, W), class ids (H, W) uint8 with
    sky SKY_CLASS, ray directions (H, W, 3) and origin (3,), map frame)."""
    prims = scene.prims
    T_map_cam = T_map_velo @ np.linalg.inv(cam.T_cam_grid)
    origin = T_map_cam[:3, 3]
    dirs = rays[0] @ T_map_cam[:3, :3].T
    blocks = camera_blocks(prims, np.linalg.inv(T_map_cam), cam.K, cam.image_size)
    t, ids = cast(scene, origin, dirs, blocks, max_t=1000.0)
    H, W = t.shape
    hit = ids != SKY
    P = origin + t[hit][:, None] * dirs[hit]
    hid = ids[hit]
    ground = hid == GROUND
    lab_hit = np.empty(len(hid), np.uint8)
    paint = np.zeros(len(hid), np.float32)
    if ground.any():
        g_lab, g_paint = scene.ground_surface(P[ground, :2])
        lab_hit[ground] = g_lab
        paint[ground] = g_paint
    lab_hit[~ground] = prims.label[hid[~ground]]
    col = shade(scene, seed, P.astype(np.float32), hid, lab_hit, paint, t[hit])
    img = np.empty((H, W, 3), np.float32)
    img[hit] = col
    # Sky: a gradient with the elevation of the ray.
    sky_e = np.clip(dirs[~hit][:, 2] / 0.35, 0.0, 1.0)[:, None] ** 0.7
    img[~hit] = _SKY_HORIZON + (_SKY_ZENITH - _SKY_HORIZON) * sky_e
    img *= (1.0 + scene.palette_shift).astype(np.float32)
    img += rng.normal(0.0, 0.01, img.shape).astype(np.float32)
    rgb = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    lab = np.full((H, W), SKY_CLASS, np.uint8)
    lab[hit] = lab_hit
    return rgb, t, ids, lab, dirs, origin


def shade(scene: Scene, seed: int, P: np.ndarray, ids: np.ndarray, lab: np.ndarray, paint: np.ndarray,
          t: np.ndarray) -> np.ndarray:
    """RGB (N, 3) float of hit points P (N, 3) at ray lengths t (N,), with hit ids, labels
    lab and ground paint (N,)."""
    prims = scene.prims
    solid = ids >= 0
    albedo = _GROUND_ALBEDO[lab].copy()
    albedo[solid] = prims.color[ids[solid]]
    albedo = albedo * (1.0 - paint[:, None]) + np.float32(0.88) * paint[:, None]
    tex = _TEX[lab]
    lo = _value_noise(P, 0.7, seed) - 0.5
    grain = _cell_noise(P, tex[:, 2], seed + 1) - 0.5
    albedo *= (1.0 + tex[:, 0] * lo * 2.0 + tex[:, 1] * grain)[:, None]
    normals = surface_normals(prims, ids, P.astype(np.float64), scene.terrain).astype(np.float32)
    pat = np.where(solid, prims.pattern[np.maximum(ids, 0)], 0)
    vertical = np.abs(normals[:, 2]) < 0.5
    # Facade coordinates: along the wall and height above the solid's bottom (a bus's
    # bottom is 0.35 m above the road, so its window band sits 0.35 m lower here).
    u = P[:, 0] * -normals[:, 1] + P[:, 1] * normals[:, 0]
    m = (pat == PAT_WINDOWS) & vertical
    if m.any():
        Ii = ids[m]
        bottom = prims.center[Ii, 2] - prims.half[Ii, 2]
        h = (P[m, 2] - bottom).astype(np.float32)
        top = (2.0 * prims.half[Ii, 2]).astype(np.float32)
        ph = (_hash(Ii, Ii * 3, Ii * 7, seed) * 1.4 + 2.6).astype(np.float32)
        bus = prims.label[Ii] == OTHER_VEHICLE
        fu = np.mod(u[m] / np.where(bus, 1.6, ph), 1.0)
        fv = np.mod(h / 3.0, 1.0)
        win = np.where(bus, (h > 0.95) & (h < 2.25) & (fu > 0.06),
                       (fu > 0.28) & (fu < 0.72) & (fv > 0.3) & (fv < 0.78) & (h > 0.8) & (h < top - 0.5))
        glass = np.array([0.13, 0.16, 0.21], np.float32) + 0.12 * _value_noise(P[m], 0.3, seed + 5)[:, None]
        albedo[m] = np.where(win[:, None], glass, albedo[m])
    m = (pat == PAT_SLATS) & vertical
    albedo[m] *= np.where(np.mod(u[m] / 0.22, 1.0) < 0.3, 0.55, 1.0)[:, None]
    m = pat == PAT_FOLIAGE
    albedo[m] *= (0.55 + 0.9 * _cell_noise(P[m], 9.0, seed + 2))[:, None]
    m = pat == PAT_BARK
    albedo[m] *= (0.75 + 0.5 * _cell_noise(P[m] * np.array([1.0, 1.0, 0.15], np.float32), 14.0, seed + 3))[:, None]
    lambert = 0.42 + 0.62 * np.maximum(normals @ scene.sun.astype(np.float32), 0.0)
    # Surfaces seen from behind (never for closed solids) stay dark rather than lit.
    col = albedo * lambert[:, None]
    fog = np.exp(-t / _FOG_DISTANCE).astype(np.float32)[:, None]
    return col * fog + _SKY_HORIZON * (1.0 - fog)


# --------------------------------------------------------------------------------------------
# LiDAR
# --------------------------------------------------------------------------------------------
def lidar_beams(azimuths: int = LIDAR_AZIMUTHS) -> tuple[np.ndarray, np.ndarray]:
    """(elevations (B,) radians, decreasing; unit directions (B, A, 3), velodyne frame) of the
    LIDAR_BEAMS beams at `azimuths` steps, column j at azimuth -pi + (j + 0.5) * 2 pi / A."""
    el = np.deg2rad(np.linspace(*LIDAR_ELEVATIONS_DEG, LIDAR_BEAMS))
    az = -np.pi + (np.arange(azimuths) + 0.5) * 2 * np.pi / azimuths
    dirs = np.stack([np.cos(el)[:, None] * np.cos(az)[None], np.cos(el)[:, None] * np.sin(az)[None],
                     np.broadcast_to(np.sin(el)[:, None], (len(el), len(az)))], -1)
    return el, dirs


def lidar_scan(scene: Scene, beams: tuple[np.ndarray, np.ndarray], T_map_velo: np.ndarray,
               rng: np.random.Generator):
    """One sweep of the LiDAR (beams from `lidar_beams`) on velodyne pose T_map_velo (4, 4):
    (points (N, 4) x, y, z, reflectance in the velodyne frame, labels (N,) uint8, instances
    (N,) uint16, ray lengths (B, A) inf where nothing within range, directions (B, A, 3) map)."""
    elevations, lidar_dirs = beams
    prims = scene.prims
    origin = T_map_velo[:3, 3]
    dirs = lidar_dirs @ T_map_velo[:3, :3].T
    blocks = lidar_blocks(prims, np.linalg.inv(T_map_velo), elevations, dirs.shape[1], LIDAR_MAX_RANGE)
    t, ids = cast(scene, origin, dirs, blocks, max_t=LIDAR_MAX_RANGE)
    valid = (ids != SKY) & (t <= LIDAR_MAX_RANGE)
    tv, iv = t[valid], ids[valid]
    ground = iv == GROUND
    lab = np.empty(len(iv), np.uint8)
    inst = np.zeros(len(iv), np.uint16)
    if ground.any():
        lab[ground] = scene.ground_labels((origin + tv[ground, None] * dirs[valid][ground])[:, :2])
    lab[~ground] = prims.label[iv[~ground]]
    inst[~ground] = prims.instance[iv[~ground]]
    r = tv + rng.normal(0.0, LIDAR_RANGE_NOISE, len(tv))
    xyz = lidar_dirs[valid] * r[:, None]
    refl = np.clip(_REFLECTANCE[lab] + rng.normal(0.0, 0.05, len(tv)), 0.0, 1.0)
    points = np.hstack([xyz, refl[:, None]]).astype(np.float32)
    return points, lab, inst, np.where(valid, t, np.inf), dirs
