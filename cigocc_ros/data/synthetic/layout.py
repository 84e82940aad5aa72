"""Drawing a street scene from a seed: the roads and junctions, the terrain, cambers and
kerbs, every object placed along the roads (checked against the ground bands and each other),
and the ego's poses. Everything comes from the seed's random streams (docs/synthetic.md,
"Determinism").
"""
from __future__ import annotations

import numpy as np

from .scene import (
    BICYCLE,
    BICYCLIST,
    BOX,
    BUILDING,
    CAR,
    CLASS_PRIORITY,
    CYLINDER,
    ELLIPSOID,
    FENCE,
    GROUND_Z,
    MOTORCYCLE,
    MOTORCYCLIST,
    OTHER_GROUND,
    OTHER_VEHICLE,
    PARKING,
    PAT_BARK,
    PAT_FOLIAGE,
    PAT_PLAIN,
    PAT_SLATS,
    PAT_WINDOWS,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    TERRAIN,
    TRAFFIC_SIGN,
    TRUCK,
    TRUNK,
    VEGETATION,
    Primitives,
    Road,
    RoadPath,
    Scene,
    hash01,
    make_terrain,
)

# The layout is planned for at least this many frames, so a shorter sequence of a seed is the
# start of the longer one (same scene, same poses).
LAYOUT_FRAMES = 50


class _Builder:
    """Collects solids and the 2D footprints used to keep objects apart while placing them."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.fp_c: list[tuple[float, float]] = []
        self.fp_h: list[tuple[float, float]] = []
        self.fp_yaw: list[float] = []
        self.next_instance = 1

    def add(self, kind, center, half, yaw, label, color, pattern=PAT_PLAIN, instance=0) -> None:
        self.rows.append((kind, tuple(center), tuple(half), float(yaw), label, tuple(color), pattern, instance))

    def footprint_free(self, c: np.ndarray, h: tuple[float, float], yaw: float) -> bool:
        """True if the yawed rectangle (centre c, half sizes h) overlaps no footprint so far
        (separating-axis test of two rectangles, vectorised over the placed ones)."""
        if not self.fp_c:
            return True
        C = np.asarray(self.fp_c)
        H = np.asarray(self.fp_h)
        Y = np.asarray(self.fp_yaw)
        delta = C - np.asarray(c)
        axes = [np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])]
        sep = np.zeros(len(C), dtype=bool)
        ua = np.stack([np.cos(Y), np.sin(Y)], 1)
        va = np.stack([-np.sin(Y), np.cos(Y)], 1)
        for ax in axes:  # the new rectangle's axes
            r_new = h[0] * abs(ax @ axes[0]) + h[1] * abs(ax @ axes[1])
            r_old = H[:, 0] * np.abs(ua @ ax) + H[:, 1] * np.abs(va @ ax)
            sep |= np.abs(delta @ ax) > r_new + r_old
        for A in (ua, va):  # the placed rectangles' axes
            r_new = h[0] * np.abs(A @ axes[0]) + h[1] * np.abs(A @ axes[1])
            r_old = H[:, 0] * np.abs(np.sum(ua * A, 1)) + H[:, 1] * np.abs(np.sum(va * A, 1))
            sep |= np.abs(np.sum(delta * A, 1)) > r_new + r_old
        return bool(sep.all())

    def reserve(self, c, h, yaw) -> None:
        self.fp_c.append((float(c[0]), float(c[1])))
        self.fp_h.append((float(h[0]), float(h[1])))
        self.fp_yaw.append(float(yaw))

    def build(self) -> Primitives:
        if not self.rows:
            raise ValueError("scene has no solids")
        cols = list(zip(*self.rows, strict=True))
        prims = Primitives(
            kind=np.asarray(cols[0], dtype=np.int8),
            center=np.asarray(cols[1], dtype=np.float64),
            half=np.asarray(cols[2], dtype=np.float64),
            yaw=np.asarray(cols[3], dtype=np.float64),
            label=np.asarray(cols[4], dtype=np.uint8),
            color=np.clip(np.asarray(cols[5], dtype=np.float32), 0, 1),
            pattern=np.asarray(cols[6], dtype=np.int8),
            instance=np.asarray(cols[7], dtype=np.int32),
        )
        # Write order of the voxel truth = class priority (stable within a class).
        order = np.argsort(CLASS_PRIORITY[prims.label], kind="stable")
        return Primitives(*(getattr(prims, f)[order] for f in (
            "kind", "center", "half", "yaw", "label", "color", "pattern", "instance")))


_CAR_COLORS = np.array([
    [0.75, 0.1, 0.08], [0.1, 0.2, 0.55], [0.85, 0.85, 0.85], [0.6, 0.62, 0.65], [0.08, 0.08, 0.09],
    [0.3, 0.32, 0.35], [0.55, 0.45, 0.3], [0.15, 0.35, 0.2], [0.9, 0.9, 0.92], [0.45, 0.05, 0.1],
])
_BUILDING_COLORS = np.array([
    [0.72, 0.62, 0.5], [0.6, 0.56, 0.52], [0.78, 0.75, 0.68], [0.55, 0.33, 0.26], [0.82, 0.8, 0.72],
    [0.65, 0.68, 0.7], [0.7, 0.55, 0.42], [0.5, 0.48, 0.46],
])
_CLOTHES = np.array([
    [0.1, 0.1, 0.12], [0.2, 0.25, 0.45], [0.6, 0.1, 0.1], [0.75, 0.72, 0.65], [0.2, 0.4, 0.25],
    [0.5, 0.4, 0.3], [0.85, 0.55, 0.1],
])


def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float = 0.05) -> np.ndarray:
    return np.clip(table[rng.integers(len(table))] + rng.normal(0, jitter, 3), 0, 1)


def _rot(yaw: float, x: float, y: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([c * x - s * y, s * x + c * y])


class _Placer:
    """Places compound objects along the roads, checking ground zones and overlaps."""

    def __init__(self, rng: np.random.Generator, roads: list[Road], scene_for_zones: Scene,
                 corridor: tuple[RoadPath, float, float, float]):
        self.rng = rng
        self.roads = roads
        self.scene = scene_for_zones
        self.b = _Builder()
        self.corridor = corridor  # (path, s0, s1, d): the ego's swept lane, kept clear
        self._offsets: dict[tuple[float, float], float] = {}

    # -- checks -------------------------------------------------------------------------
    def _samples(self, c, h, yaw, n=4) -> np.ndarray:
        g = np.linspace(-1, 1, n)
        lx, ly = np.meshgrid(g * h[0], g * h[1], indexing="ij")
        cs, sn = np.cos(yaw), np.sin(yaw)
        return np.stack([c[0] + cs * lx.ravel() - sn * ly.ravel(), c[1] + sn * lx.ravel() + cs * ly.ravel()], 1)

    def fits(self, c, h, yaw, zones: tuple[int, ...], margin: float = 0.3) -> bool:
        hm = (h[0] + margin, h[1] + margin)
        pts = self._samples(c, hm, yaw, n=max(3, int(2 * max(hm) / 2.0) + 2))
        lab = self.scene.ground_labels(pts)
        if not np.isin(lab, zones).all():
            return False
        path, s0, s1, d_ego = self.corridor
        s, d = path.local(pts)
        if np.any((s > s0) & (s < s1) & (np.abs(d - d_ego) < 1.6)):
            return False
        return self.b.footprint_free(c, hm, yaw)

    def reserve(self, c, h, yaw, margin: float = 0.3) -> None:
        self.b.reserve(c, (h[0] + margin, h[1] + margin), yaw)

    # -- compounds ------------------------------------------------------------------------
    def ground(self, c2, xy=None) -> float:
        """Map z of the ground under point xy (default c2) of the object standing at c2: the
        terrain there plus the crown / kerb of the band under c2 (one band per object, so the
        parts of a car on a kerb's edge stay together)."""
        key = (float(c2[0]), float(c2[1]))
        off = self._offsets.get(key)
        if off is None:
            off = self._offsets[key] = float(self.scene.ground_offset(np.asarray(key)[None])[0])
        p = np.asarray(c2 if xy is None else xy, np.float64)[None]
        return float(self.scene.terrain.height(p)[0]) + off

    def box(self, c2, z0, size, yaw, label, color, pattern=PAT_PLAIN, inst=0, dx=0.0, dy=0.0, base=None):
        """Box of size (l, w, h) whose bottom is z0 above the ground under its own centre (or
        above map z `base`), offset (dx, dy) in the object's frame from the object's ground
        centre c2."""
        off = _rot(yaw, dx, dy)
        xy = (c2[0] + off[0], c2[1] + off[1])
        z = self.ground(c2, xy) if base is None else base
        self.b.add(BOX, (xy[0], xy[1], z + z0 + size[2] / 2),
                   (size[0] / 2, size[1] / 2, size[2] / 2), yaw, label, color, pattern, inst)

    def cylinder(self, c2, z0, r, height, label, color, pattern=PAT_PLAIN, inst=0):
        self.b.add(CYLINDER, (c2[0], c2[1], self.ground(c2) + z0 + height / 2), (r, r, height / 2), 0.0,
                   label, color, pattern, inst)

    def ellipsoid(self, c2, zc, radii, yaw, label, color, pattern=PAT_PLAIN, inst=0, dx=0.0, dy=0.0):
        off = _rot(yaw, dx, dy)
        xy = (c2[0] + off[0], c2[1] + off[1])
        self.b.add(ELLIPSOID, (xy[0], xy[1], self.ground(c2, xy) + zc), radii, yaw, label, color,
                   pattern, inst)

    def car(self, c2, yaw, label=CAR, inst=0) -> None:
        rng = self.rng
        L, W = rng.uniform(3.9, 4.7), rng.uniform(1.7, 1.9)
        col = _pick(rng, _CAR_COLORS)
        glass = (0.1, 0.12, 0.14)
        tyre = (0.05, 0.05, 0.05)
        self.box(c2, 0.3, (L, W, 0.75), yaw, label, col, inst=inst)
        self.box(c2, 1.05, (L * 0.5, W * 0.86, 0.48), yaw, label, glass, inst=inst, dx=-0.2)
        for sx in (-1, 1):
            for sy in (-1, 1):
                self.box(c2, 0.0, (0.62, 0.22, 0.55), yaw, label, tyre, inst=inst,
                         dx=sx * (L / 2 - 0.8), dy=sy * (W / 2 - 0.12))

    def truck(self, c2, yaw, inst=0) -> None:
        rng = self.rng
        L, W = rng.uniform(6.5, 9.0), 2.45
        cab = _pick(rng, _CAR_COLORS)
        cargo = _pick(rng, np.array([[0.85, 0.85, 0.82], [0.6, 0.6, 0.6], [0.8, 0.45, 0.1], [0.2, 0.3, 0.5]]))
        self.box(c2, 0.45, (L, W, 0.5), yaw, TRUCK, (0.15, 0.15, 0.15), inst=inst)
        self.box(c2, 0.95, (2.0, W, 1.9), yaw, TRUCK, cab, inst=inst, dx=L / 2 - 1.0)
        self.box(c2, 0.95, (L - 2.3, W, rng.uniform(2.2, 2.8)), yaw, TRUCK, cargo, inst=inst, dx=-1.15)
        for dx in (L / 2 - 1.2, -L / 2 + 1.4):
            for sy in (-1, 1):
                self.box(c2, 0.0, (0.95, 0.3, 0.95), yaw, TRUCK, (0.05, 0.05, 0.05), inst=inst,
                         dx=dx, dy=sy * (W / 2 - 0.15))

    def other_vehicle(self, c2, yaw, inst=0) -> None:
        """A bus / tram-like long vehicle (SemanticKITTI's other-vehicle)."""
        rng = self.rng
        L, W = rng.uniform(10.0, 12.5), 2.55
        col = _pick(rng, np.array([[0.9, 0.8, 0.1], [0.8, 0.15, 0.1], [0.9, 0.9, 0.9], [0.2, 0.45, 0.7]]))
        self.box(c2, 0.35, (L, W, 2.75), yaw, OTHER_VEHICLE, col, PAT_WINDOWS, inst=inst)
        for dx in (L / 2 - 2.0, -L / 2 + 2.5):
            for sy in (-1, 1):
                self.box(c2, 0.0, (1.0, 0.3, 1.0), yaw, OTHER_VEHICLE, (0.05, 0.05, 0.05), inst=inst,
                         dx=dx, dy=sy * (W / 2 - 0.15))

    def person(self, c2, yaw, label=PERSON, inst=0, z0=0.0) -> None:
        rng = self.rng
        s = rng.uniform(0.9, 1.1)
        legs = _pick(rng, _CLOTHES)
        top = _pick(rng, _CLOTHES)
        if z0 == 0.0:
            self.box(c2, 0.0, (0.25 * s, 0.36 * s, 0.85 * s), yaw, label, legs, inst=inst)
        self.box(c2, z0 + 0.85 * s, (0.26 * s, 0.44 * s, 0.6 * s), yaw, label, top, inst=inst)
        self.ellipsoid(c2, z0 + 1.58 * s, (0.11 * s, 0.1 * s, 0.13 * s), yaw, label, (0.78, 0.6, 0.48), inst=inst)

    def two_wheeler(self, c2, yaw, motor: bool, rider_label: int | None, parked_label: int, inst=0) -> None:
        rng = self.rng
        label = rider_label if rider_label is not None else parked_label
        L = 2.0 if motor else 1.75
        col = _pick(rng, _CAR_COLORS if motor else _CLOTHES)
        for dx in (L / 2 - 0.35, -L / 2 + 0.35):
            self.box(c2, 0.0, (0.68, 0.08 if not motor else 0.14, 0.68), yaw, label, (0.06, 0.06, 0.06),
                     inst=inst, dx=dx)
        if motor:
            self.box(c2, 0.3, (L * 0.62, 0.36, 0.55), yaw, label, col, inst=inst)
        else:
            self.box(c2, 0.35, (L * 0.62, 0.05, 0.45), yaw, label, col, inst=inst)
        if rider_label is not None:
            top = _pick(rng, _CLOTHES)
            self.box(c2, 0.3, (0.3, 0.42, 0.6), yaw, label, _pick(rng, _CLOTHES), inst=inst, dx=-0.15)
            self.box(c2, 0.9, (0.3, 0.42, 0.58), yaw, label, top, inst=inst, dx=0.0)
            self.ellipsoid(c2, 1.62, (0.13, 0.12, 0.14), yaw, label,
                           (0.15, 0.15, 0.15) if motor else (0.78, 0.6, 0.48), inst=inst, dx=0.05)

    def tree(self, c2) -> None:
        rng = self.rng
        h = rng.uniform(2.0, 3.5)
        r = rng.uniform(0.12, 0.3)
        self.cylinder(c2, 0.0, r, h + 0.6, TRUNK, (0.32, 0.24, 0.17) + rng.normal(0, 0.03, 3), PAT_BARK)
        cr = rng.uniform(1.4, 3.0)
        crz = cr * rng.uniform(0.8, 1.4)
        green = np.array([0.2, 0.38, 0.12]) + rng.normal(0, 0.04, 3)
        self.ellipsoid(c2, h + crz * 0.85, (cr, cr * rng.uniform(0.85, 1.0), crz), rng.uniform(0, np.pi),
                       VEGETATION, green, PAT_FOLIAGE)

    def pole(self, c2, yaw_to_road: float, lamp: bool) -> None:
        rng = self.rng
        h = rng.uniform(5.5, 8.5) if lamp else rng.uniform(3.0, 5.0)
        grey = (0.45, 0.46, 0.48) + rng.normal(0, 0.03, 3)
        self.cylinder(c2, 0.0, rng.uniform(0.07, 0.12), h, POLE, grey)
        if lamp:
            arm = rng.uniform(1.2, 2.2)
            self.box(c2, h - 0.15, (arm, 0.12, 0.12), yaw_to_road, POLE, grey, dx=arm / 2)

    def sign(self, c2, facing: float) -> None:
        rng = self.rng
        h = rng.uniform(2.2, 3.0)
        self.cylinder(c2, 0.0, 0.05, h, POLE, (0.5, 0.5, 0.52))
        kind = rng.integers(3)
        if kind == 2:  # traffic light housing
            self.box(c2, h, (0.3, 0.35, 0.95), facing, TRAFFIC_SIGN, (0.08, 0.08, 0.08), dx=0.1)
        else:
            col = [(0.1, 0.25, 0.7), (0.85, 0.1, 0.1), (0.95, 0.8, 0.1)][int(rng.integers(3))]
            side = rng.uniform(0.55, 0.8)
            self.box(c2, h - side / 2, (0.04, side, side), facing, TRAFFIC_SIGN, col, dx=0.07)

    def building(self, c2, yaw, L, D, H) -> None:
        """A block standing on the lowest ground under its footprint (dug into a slope)."""
        col = _pick(self.rng, _BUILDING_COLORS, 0.03)
        corners = self._samples(c2, (L / 2, D / 2), yaw, n=2)
        base = min(self.ground(c2, p) for p in corners)
        self.box(c2, 0.0, (L, D, H), yaw, BUILDING, col, PAT_WINDOWS, base=base)
        if self.rng.random() < 0.3:  # a rooftop block
            self.box(c2, H, (L * 0.5, D * 0.5, self.rng.uniform(1.0, 2.5)), yaw, BUILDING, col * 0.9, base=base)


def _road_pieces(rng: np.random.Generator) -> list[tuple[float, float]]:
    pieces: list[tuple[float, float]] = [(rng.uniform(70.0, 130.0), 0.0)]
    for _ in range(3):
        R = rng.uniform(35.0, 110.0)
        ang = rng.uniform(0.25, 0.9)
        pieces.append((R * ang, rng.choice([-1.0, 1.0]) / R))
        pieces.append((rng.uniform(25.0, 70.0), 0.0))
    pieces.append((300.0, 0.0))
    return pieces


def make_scene(seed: int, num_frames: int, rate_hz: float = 10.0) -> Scene:
    """Generate the scene and a `num_frames` ego trajectory at `rate_hz` from `seed`."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5C3E]))
    start_back = 60.0  # metres of road behind the first frame (the lidar sees all around)
    pieces = _road_pieces(rng)
    # Terrain, cambers, kerbs and the ego's jitter come from their own stream, so the layout
    # draws below are those of the flat generator of the same seed.
    rng_z = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E44]))
    main = Road(RoadPath((-start_back, 0.0), 0.0, pieces),
                lanes=int(rng.choice([1, 1, 2])), median=float(rng.choice([0.0, 0.0, 1.0])),
                sidewalk=float(rng.uniform(2.0, 4.0)), verge_seed=int(rng.integers(1 << 30)),
                crown=float(rng_z.uniform(0.01, 0.03)), kerb=float(rng_z.uniform(0.1, 0.2)))
    speed = float(rng.uniform(5.0, 9.0))
    s_ego0 = start_back
    s_ego1 = s_ego0 + speed * (max(num_frames, LAYOUT_FRAMES) - 1) / rate_hz
    d_ego = main.lane_offset(0, -1)
    if main.path.length < s_ego1 + 200.0:  # long sequences: stretch the final straight
        pieces[-1] = (pieces[-1][0] + s_ego1 + 200.0 - main.path.length, 0.0)
        main.path = RoadPath((-start_back, 0.0), 0.0, pieces)

    # Parking lanes on one or both sides, over stretches of the visible road.
    for side in (-1, 1):
        s = s_ego0 - 40 + rng.uniform(0, 20)
        while s < s_ego1 + 70:
            L = rng.uniform(20, 60)
            if rng.random() < 0.55:
                main.parking.append((s, s + L, side))
            s += L + rng.uniform(10, 40)

    roads = [main]
    # Junctions ahead of the ego: crossing (X) or T roads.
    # One or two junctions near the start, one more per 120 m of a long drive.
    n_junctions = int(rng.integers(1, 3)) + max(0, int((s_ego1 - s_ego0 - 60.0) // 120.0))
    for j in range(n_junctions):
        sj = s_ego0 + rng.uniform(15.0, max(20.0, s_ego1 - s_ego0 + 45.0)) if j == 0 else \
            s_ego0 + rng.uniform(-30.0, s_ego1 - s_ego0 + 60.0)
        pj, hj = main.path.pose(np.array([sj]))
        ang = hj[0] + np.pi / 2 + rng.uniform(-0.3, 0.3)
        tee = rng.random() < 0.4
        back = 0.0 if tee else 80.0
        side_sign = rng.choice([-1.0, 1.0]) if tee else 1.0
        a = ang if side_sign > 0 else ang + np.pi
        start = pj[0] - back * np.array([np.cos(a), np.sin(a)])
        road = Road(RoadPath((float(start[0]), float(start[1])), float(a), [(back + 80.0, 0.0)]),
                    lanes=1, median=0.0, sidewalk=float(rng.uniform(1.8, 3.5)),
                    verge_seed=int(rng.integers(1 << 30)),
                    crown=float(rng_z.uniform(0.01, 0.03)), kerb=float(rng_z.uniform(0.1, 0.2)))
        for side in (-1, 1):
            if rng.random() < 0.4:
                road.parking.append((back + 15.0, back + 60.0, side))
        roads.append(road)

    sun_az, sun_el = rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 1.1)
    sun = np.array([np.cos(sun_el) * np.cos(sun_az), np.cos(sun_el) * np.sin(sun_az), np.sin(sun_el)])
    p0, _ = main.path.pose(np.array([s_ego0]))
    # The profile spans the drive and the scene around it; the ground is level beyond.
    u_start = float(p0[0, 0])
    terrain = make_terrain(rng_z, u_start, u_start - 200.0, u_start + (s_ego1 - s_ego0) + 250.0)
    scene = Scene(int(seed), roads, None, None, sun, rng.normal(0, 0.03, 3), terrain)  # type: ignore[arg-type]
    scene.velo_poses = _ego_poses(scene, main, rng_z, s_ego0 + speed * np.arange(num_frames) / rate_hz, d_ego,
                                  np.arange(num_frames) / rate_hz)

    placer = _Placer(rng, roads, scene, (main.path, s_ego0 - 8.0, s_ego1 + 8.0, d_ego))
    _populate(placer, roads, s_ego0 - 50.0, s_ego1 + 90.0)
    _ensure_rare(placer, main, s_ego0 + 5.0, s_ego1 + 40.0)
    scene.prims = placer.b.build()
    return scene


LIDAR_HEIGHT = -GROUND_Z  # metres of the velodyne above the road (KITTI), before jitter


def _ego_poses(scene: Scene, road: Road, rng: np.random.Generator, s: np.ndarray, d: float,
               t: np.ndarray) -> np.ndarray:
    """(F, 4, 4) velodyne -> map poses of an ego at arc lengths s (F,) and lateral offset d of
    `road`, at times t (F,): yaw along the road, pitch and roll with the ground under the
    wheels (heights 1.4 m ahead / behind and 0.8 m left / right), the velodyne LIDAR_HEIGHT
    above the ground along the body's up axis; plus a per-sequence mounting offset (height
    +-0.08 m, pitch +-1 deg) and a suspension sway (height 0.03 m, pitch 0.6 deg, roll 0.4 deg
    at 0.4-1.5 Hz). Parameters are drawn before any time is used, so a longer sequence starts
    with the same poses."""
    dh0, dp0 = rng.uniform(-0.08, 0.08), np.deg2rad(rng.uniform(-1.0, 1.0))
    amp = np.array([0.03, np.deg2rad(0.6), np.deg2rad(0.4)]) * rng.uniform(0.5, 1.0, 3)
    freq = rng.uniform(0.4, 1.5, 3)
    phase = rng.uniform(0, 2 * np.pi, 3)
    sway = amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t[None] + phase[:, None])  # (3, F)
    c, h = road.path.pose(s)
    fwd = np.stack([np.cos(h), np.sin(h)], 1)
    left = np.stack([-np.sin(h), np.cos(h)], 1)
    xy = c + d * left
    z = scene.ground_height(xy)
    pitch = np.arctan2(scene.ground_height(xy + 1.4 * fwd) - scene.ground_height(xy - 1.4 * fwd), 2.8)
    roll = np.arctan2(scene.ground_height(xy + 0.8 * left) - scene.ground_height(xy - 0.8 * left), 1.6)
    pitch = pitch + dp0 + sway[1]
    roll = roll + sway[2]
    poses = np.tile(np.eye(4), (len(s), 1, 1))
    for i in range(len(s)):
        cy, sy = np.cos(h[i]), np.sin(h[i])
        cp, sp = np.cos(pitch[i]), np.sin(pitch[i])
        cr, sr = np.cos(roll[i]), np.sin(roll[i])
        Rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
        Ry = np.array([[cp, 0.0, -sp], [0.0, 1.0, 0.0], [sp, 0.0, cp]])  # nose up for pitch > 0
        Rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])  # left side up for roll > 0
        R = Rz @ Ry @ Rx
        poses[i, :3, :3] = R
        poses[i, :3, 3] = (xy[i, 0], xy[i, 1], z[i]) + R[:, 2] * (LIDAR_HEIGHT + dh0 + sway[0, i])
    return poses


def _populate(P: _Placer, roads: list[Road], s_lo: float, s_hi: float) -> None:
    """Fill the bands of every road with objects over the interesting stretch."""
    for ri, road in enumerate(roads):
        lo, hi = (s_lo, s_hi) if ri == 0 else (0.0, road.path.length)
        for side in (-1, 1):
            _populate_side(P, road, ri, side, lo, hi)


def _populate_side(P: _Placer, road: Road, ri: int, side: int, lo: float, hi: float) -> None:
    """Objects on one side (+1 left) of one road between arc lengths lo and hi."""
    rng = P.rng
    verge = (TERRAIN, OTHER_GROUND)
    hw = road.half_width

    def at(s_val: float, d_val: float) -> tuple[np.ndarray, float]:
        return _at(road, s_val, d_val)

    def edge(s_val: float) -> float:
        return _edge(road, s_val, side)

    # Buildings behind the sidewalk (skipped over "park" stretches).
    s = lo + rng.uniform(0, 8)
    while s < hi:
        L, D, H = rng.uniform(8, 28), rng.uniform(8, 16), rng.uniform(4.5, 20)
        park = hash01(np.array([int(s // 60), side + 7 * ri]), 11)[0] < 0.25
        if not park:
            setback = rng.uniform(1.0, 7.0)
            c, hd = at(s + L / 2, side * (edge(s + L / 2) + setback + D / 2))
            if P.fits(c, (L / 2, D / 2), hd, verge):
                P.building(c, hd, L, D, H)
                P.reserve(c, (L / 2, D / 2), hd)
                s += L + rng.uniform(0.5, 9.0)
                continue
        s += rng.uniform(3.0, 8.0)
    # Fences and hedges on the verge next to the sidewalk.
    s = lo + rng.uniform(0, 20)
    while s < hi:
        L = rng.uniform(4, 16)
        c, hd = at(s + L / 2, side * (edge(s + L / 2) + rng.uniform(0.4, 1.2)))
        if rng.random() < 0.6:
            if P.fits(c, (L / 2, 0.1), hd, verge, margin=0.1):
                _stepped(P, c, L, (0.06, rng.uniform(0.9, 2.0)), hd, FENCE,
                         _pick(rng, np.array([[0.45, 0.4, 0.32], [0.55, 0.56, 0.58], [0.3, 0.3, 0.28]])),
                         PAT_SLATS)
                P.reserve(c, (L / 2, 0.1), hd, 0.1)
        elif P.fits(c, (L / 2, 0.6), hd, verge, margin=0.1):
            _stepped(P, c, L, (rng.uniform(0.8, 1.4), rng.uniform(0.8, 1.8)), hd, VEGETATION,
                     np.array([0.18, 0.33, 0.1]) + rng.normal(0, 0.03, 3), PAT_FOLIAGE)
            P.reserve(c, (L / 2, 0.6), hd, 0.1)
        s += L + rng.uniform(5, 25)
    # Trees: in sidewalk pits and out on the verge.
    s = lo + rng.uniform(0, 10)
    while s < hi:
        on_sidewalk = rng.random() < 0.5
        off = edge(s) - 0.8 if on_sidewalk else edge(s) + rng.uniform(1.5, 8.0)
        c, hd = at(s, side * off)
        zones = (SIDEWALK,) if on_sidewalk else verge
        if P.fits(c, (0.5, 0.5), hd, zones, margin=0.2):
            P.tree(c)
            P.reserve(c, (0.5, 0.5), hd, 0.2)
        s += rng.uniform(5, 18)
    # Lamp posts and plain poles at the kerb, signs and traffic lights.
    s = lo + rng.uniform(0, 15)
    while s < hi:
        pw = road.parking_width if road.parking_at(np.array([s]), np.array([side]))[0] else 0.0
        c, hd = at(s, side * (hw + pw + 0.45))
        if P.fits(c, (0.2, 0.2), hd, (SIDEWALK,), margin=0.1):
            if rng.random() < 0.35:
                # Signs face the traffic of their side (right-hand traffic).
                P.sign(c, hd + (np.pi if side < 0 else 0.0))
            else:
                P.pole(c, hd + (np.pi / 2 if side < 0 else -np.pi / 2), lamp=rng.random() < 0.6)
            P.reserve(c, (0.2, 0.2), hd, 0.1)
        s += rng.uniform(8, 25)
    # Vehicles in parking lanes.
    for s0, s1, sd in road.parking:
        if sd != side:
            continue
        s = s0 + rng.uniform(0.5, 3.0)
        while s < s1 - 3.0:
            r = rng.random()
            c, hd = at(s, side * (hw + road.parking_width / 2))
            yaw = hd if side < 0 else hd + np.pi
            if r < 0.7 and P.fits(c, (2.4, 1.0), yaw, (PARKING, ROAD), margin=0.1):
                P.car(c, yaw, inst=_inst(P))
                P.reserve(c, (2.4, 1.0), yaw, 0.1)
            elif r < 0.78 and P.fits(c, (4.6, 1.3), yaw, (PARKING, ROAD), margin=0.1):
                P.truck(c, yaw, inst=_inst(P))
                P.reserve(c, (4.6, 1.3), yaw, 0.1)
            s += rng.uniform(5.5, 7.5)
    # Vehicles in the lanes (stopped traffic), opposite lanes and the far stretch.
    s = lo + rng.uniform(0, 15)
    while s < hi:
        lane = int(rng.integers(road.lanes))
        c, hd = at(s, road.lane_offset(lane, side) + rng.normal(0, 0.2))
        yaw = hd if side < 0 else hd + np.pi
        r = rng.random()
        if r < 0.6:
            if P.fits(c, (2.4, 1.0), yaw, (ROAD,), margin=0.2):
                P.car(c, yaw, inst=_inst(P))
                P.reserve(c, (2.4, 1.0), yaw, 0.2)
        elif r < 0.72:
            if P.fits(c, (4.6, 1.3), yaw, (ROAD,), margin=0.2):
                P.truck(c, yaw, inst=_inst(P))
                P.reserve(c, (4.6, 1.3), yaw, 0.2)
        elif r < 0.82:
            if P.fits(c, (6.3, 1.3), yaw, (ROAD,), margin=0.2):
                P.other_vehicle(c, yaw, inst=_inst(P))
                P.reserve(c, (6.3, 1.3), yaw, 0.2)
        else:
            _ride_two_wheeler(P, road, s, side, motor=rng.random() < 0.5)
        s += rng.uniform(8, 30)
    # People on the sidewalk, parked two-wheelers at its outer edge.
    s = lo + rng.uniform(0, 6)
    while s < hi:
        r = rng.random()
        e = edge(s)
        if r < 0.6:
            c, hd = at(s, side * (e - rng.uniform(0.5, road.sidewalk - 0.3)))
            if P.fits(c, (0.3, 0.3), hd, (SIDEWALK,), margin=0.05):
                P.person(c, rng.uniform(-np.pi, np.pi), inst=_inst(P))
                P.reserve(c, (0.3, 0.3), hd, 0.05)
        else:
            _park_two_wheeler(P, road, s, side, motor=rng.random() < 0.4)
        s += rng.uniform(3, 14)


def _stepped(P: _Placer, c, L: float, wh: tuple[float, float], yaw: float, label: int, color, pattern) -> None:
    """A long fence / hedge of length L as pieces of at most 4 m, each on the ground under it,
    so it follows a slope in steps instead of floating or sinking at one end."""
    n = int(np.ceil(L / 4.0))
    for j in range(n):
        P.box(c, 0.0, (L / n, *wh), yaw, label, color, pattern, dx=-L / 2 + (j + 0.5) * L / n)


def _at(road: Road, s: float, d: float) -> tuple[np.ndarray, float]:
    """Map-frame point (2,) at arc length s and offset d of a road, and the heading there."""
    p, hd = road.path.pose(np.array([s]))
    n = np.array([-np.sin(hd[0]), np.cos(hd[0])])
    return p[0] + d * n, float(hd[0])


def _edge(road: Road, s: float, side: int) -> float:
    """Offset of the outer edge of the sidewalk on `side` at arc length s."""
    pw = road.parking_width if road.parking_at(np.array([s]), np.array([side]))[0] else 0.0
    return road.half_width + pw + road.sidewalk


def _park_two_wheeler(P: _Placer, road: Road, s: float, side: int, motor: bool) -> bool:
    """A parked bicycle / motorcycle along the sidewalk's outer edge; False if it does not fit."""
    c, hd = _at(road, s, side * (_edge(road, s, side) - 0.6))
    yaw = hd + P.rng.normal(0, 0.1) + (np.pi if P.rng.random() < 0.5 else 0.0)
    if not P.fits(c, (1.05, 0.4), yaw, (SIDEWALK,), margin=0.05):
        return False
    P.two_wheeler(c, yaw, motor, None, MOTORCYCLE if motor else BICYCLE, inst=_inst(P))
    P.reserve(c, (1.05, 0.4), yaw, 0.05)
    return True


def _ride_two_wheeler(P: _Placer, road: Road, s: float, side: int, motor: bool) -> bool:
    """A bicyclist / motorcyclist near the road's edge, riding with the traffic of `side`."""
    c, hd = _at(road, s, side * (road.half_width - 0.9))
    yaw = hd if side < 0 else hd + np.pi
    if not P.fits(c, (1.1, 0.4), yaw, (ROAD,), margin=0.2):
        return False
    P.two_wheeler(c, yaw, motor, MOTORCYCLIST if motor else BICYCLIST, 0, inst=_inst(P))
    P.reserve(c, (1.1, 0.4), yaw, 0.2)
    return True


def _bus_in_lane(P: _Placer, road: Road, s: float, side: int, motor: bool) -> bool:
    """An other-vehicle (bus-like) in the outer lane of `side`; `motor` is unused."""
    c, hd = _at(road, s, road.lane_offset(road.lanes - 1, side))
    yaw = hd if side < 0 else hd + np.pi
    if not P.fits(c, (6.3, 1.3), yaw, (ROAD,), margin=0.2):
        return False
    P.other_vehicle(c, yaw, inst=_inst(P))
    P.reserve(c, (6.3, 1.3), yaw, 0.2)
    return True


def _ensure_rare(P: _Placer, road: Road, s0: float, s1: float, per_class: int = 2, tries: int = 40) -> None:
    """Up to `per_class` more parked bicycles, parked motorcycles, bicyclists, motorcyclists and
    one bus-like other-vehicle between arc lengths s0 and s1 of `road` (the stretch the ego
    sees), so that every sequence holds the rarest classes (the random pass leaves them out of
    many sequences)."""
    rng = P.rng
    for place, motor, wanted in ((_park_two_wheeler, False, per_class), (_park_two_wheeler, True, per_class),
                                 (_ride_two_wheeler, False, per_class), (_ride_two_wheeler, True, per_class),
                                 (_bus_in_lane, False, 1)):
        placed = 0
        for _ in range(tries):
            if placed >= wanted:
                break
            placed += place(P, road, float(rng.uniform(s0, s1)), int(rng.choice([-1, 1])), motor)


def _inst(P: _Placer) -> int:
    i = P.b.next_instance
    P.b.next_instance += 1
    return i
