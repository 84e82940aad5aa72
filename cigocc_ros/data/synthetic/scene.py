"""What a synthetic street scene is: terrain, roads and their ground bands, analytic solids,
and the Scene that holds them with the ego trajectory (layout.py draws one from a seed).

Frames: everything here lives in the *map* frame (x, y horizontal, z up). The ground is a
height field: a `Terrain` profile (hills, a ramp, a grade: piecewise linear along one map
direction, exact to ray-cast) plus per-band offsets of the roads (a cambered road crown, kerbs
raising sidewalks, verges and medians). `Scene.ground_height` gives it. The ego's velodyne rides
GROUND_Z above the road under it (KITTI's 1.73 m, jittered per sequence and per frame), pitched
and rolled with the road's slope plus a suspension jitter, so a frame's velodyne pose is a full
3D rotation and translation. `Scene.velo_poses` (F, 4, 4) maps velodyne-frame points of frame i
into the map.

Solids (`Primitives`) are of three kinds, each with a centre, half sizes and a yaw about z:
  box       — |local| <= half on every axis (buildings, vehicles, fences, sign plates, limbs);
  cylinder  — vertical axis, radius half[0], half height half[2] (poles, trunks);
  ellipsoid — semi-axes half (tree crowns, bushes, heads).
Solids stand on the ground height at their own centre (buildings on the lowest ground under
their footprint). The ground is not a solid: it is the height field with a class per point
given by `Scene.ground_labels`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Training labels (cigocc_ros.classes order: 0 empty .. 19 traffic-sign).
CAR, BICYCLE, MOTORCYCLE, TRUCK, OTHER_VEHICLE = 1, 2, 3, 4, 5
PERSON, BICYCLIST, MOTORCYCLIST = 6, 7, 8
ROAD, PARKING, SIDEWALK, OTHER_GROUND = 9, 10, 11, 12
BUILDING, FENCE, VEGETATION, TRUNK, TERRAIN, POLE, TRAFFIC_SIGN = 13, 14, 15, 16, 17, 18, 19

BOX, CYLINDER, ELLIPSOID = 0, 1, 2
GROUND_Z = -1.73  # the ground under the ego's first pose, map frame (KITTI's lidar height)
LANE_WIDTH = 3.5

# Surface patterns the renderer knows (per primitive).
PAT_PLAIN, PAT_WINDOWS, PAT_SLATS, PAT_FOLIAGE, PAT_BARK = 0, 1, 2, 3, 4

# Order in which solids are written into the voxel truth: later wins where two overlap
# (a crown hides the top of its trunk, a rider sits on the vehicle part of the compound).
CLASS_PRIORITY = np.zeros(20, dtype=np.int32)
for _rank, _c in enumerate([FENCE, BUILDING, TRUNK, VEGETATION, POLE, TRAFFIC_SIGN, BICYCLE, MOTORCYCLE,
                            OTHER_VEHICLE, TRUCK, CAR, PERSON, BICYCLIST, MOTORCYCLIST]):
    CLASS_PRIORITY[_c] = _rank + 1


# --------------------------------------------------------------------------------------------
# Roads: polylines of straight pieces and circular arcs, with (s, d) coordinates
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """A straight piece (curvature 0) or a circular arc of a road's centreline."""

    s0: float
    p0: tuple[float, float]
    heading: float
    length: float
    curvature: float  # 1/m, > 0 turns left


class RoadPath:
    """A road centreline: continuous chain of segments starting at `start` with `heading`."""

    def __init__(self, start: tuple[float, float], heading: float, pieces: list[tuple[float, float]]):
        self.segments: list[Segment] = []
        p = np.asarray(start, dtype=np.float64)
        h, s = float(heading), 0.0
        for length, k in pieces:
            self.segments.append(Segment(s, (float(p[0]), float(p[1])), h, float(length), float(k)))
            p, h = self._advance(p, h, length, k)
            s += length
        self.length = s

    @staticmethod
    def _advance(p: np.ndarray, h: float, L: float, k: float) -> tuple[np.ndarray, float]:
        if abs(k) < 1e-12:
            return p + L * np.array([np.cos(h), np.sin(h)]), h
        h1 = h + k * L
        return p + np.array([np.sin(h1) - np.sin(h), np.cos(h) - np.cos(h1)]) / k, h1

    def pose(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centreline points (N, 2) and headings (N,) at arc lengths s (N,)."""
        s = np.atleast_1d(np.asarray(s, dtype=np.float64))
        xy = np.zeros((len(s), 2))
        hd = np.zeros(len(s))
        for seg in self.segments:
            m = np.ones(len(s), dtype=bool) if seg is self.segments[0] else s >= seg.s0
            u = s[m] - seg.s0
            k = seg.curvature
            if abs(k) < 1e-12:
                xy[m] = np.asarray(seg.p0) + u[:, None] * np.array([np.cos(seg.heading), np.sin(seg.heading)])
                hd[m] = seg.heading
            else:
                h1 = seg.heading + k * u
                xy[m, 0] = seg.p0[0] + (np.sin(h1) - np.sin(seg.heading)) / k
                xy[m, 1] = seg.p0[1] + (np.cos(seg.heading) - np.cos(h1)) / k
                hd[m] = h1
        return xy, hd

    def local(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s, d) of points (N, 2): arc length of the nearest centreline point and the signed
        lateral offset (> 0 left of the direction of travel)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        best = np.full(len(xy), np.inf)
        s_out = np.zeros(len(xy))
        d_out = np.zeros(len(xy))
        mids, _ = self.pose(np.array([seg.s0 + seg.length / 2 for seg in self.segments]))
        for seg, mid in zip(self.segments, mids, strict=True):
            # Every point of a segment lies within half its length of its middle: points whose
            # distance to the middle exceeds that by more than their best distance so far
            # cannot come closer, so only the others are measured.
            lower = np.hypot(xy[:, 0] - mid[0], xy[:, 1] - mid[1]) - seg.length / 2
            sel = np.flatnonzero(lower < best)
            if sel.size == 0:
                continue
            u, d, dist = self._segment_local(seg, xy[sel])
            m = dist < best[sel]
            idx = sel[m]
            best[idx] = dist[m]
            s_out[idx] = seg.s0 + u[m]
            d_out[idx] = d[m]
        return s_out, d_out

    def _segment_local(self, seg: Segment, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(arc length within the segment, signed offset, distance) of points (N, 2)."""
        rel = xy - np.asarray(seg.p0)
        k = seg.curvature
        t = np.array([np.cos(seg.heading), np.sin(seg.heading)])
        n = np.array([-t[1], t[0]])
        if abs(k) < 1e-12:
            a = rel @ t
            d = rel @ n
            u = np.clip(a, 0.0, seg.length)
            return u, d, np.hypot(a - u, d)
        R = 1.0 / abs(k)
        c = n / k  # centre relative to p0
        q = rel - c
        r = np.hypot(q[:, 0], q[:, 1])
        phi = np.arctan2(q[:, 1], q[:, 0])
        phi0 = np.arctan2(-c[1], -c[0])
        sweep = np.mod((phi - phi0) * np.sign(k), 2 * np.pi)
        inside = sweep <= abs(k) * seg.length
        # Beyond the arc's ends: measure from the nearer end point.
        end_xy, end_h = self._advance(np.zeros(2), seg.heading, seg.length, k)
        d_start = np.hypot(rel[:, 0], rel[:, 1])
        d_end = np.hypot(rel[:, 0] - end_xy[0], rel[:, 1] - end_xy[1])
        at_end = d_end < d_start
        u = np.where(inside, sweep * R, np.where(at_end, seg.length, 0.0))
        dist = np.where(inside, np.abs(np.sign(k) * (R - r)), np.minimum(d_start, d_end))
        n_end = np.array([-np.sin(end_h), np.cos(end_h)])
        d = np.where(inside, np.sign(k) * (R - r), np.where(at_end, (rel - end_xy) @ n_end, rel @ n))
        return u, d, dist


@dataclass
class Road:
    """A road and the ground bands beside it, measured from its centreline (metres)."""

    path: RoadPath
    lanes: int  # per direction
    median: float  # half width of a central island (other-ground), 0 = none
    sidewalk: float  # sidewalk width
    parking: list[tuple[float, float, int]] = field(default_factory=list)  # (s0, s1, side +1 left / -1 right)
    parking_width: float = 2.5
    verge_seed: int = 0
    crown: float = 0.0  # cross slope of the carriageway (m/m), falling from the centre to the edges
    kerb: float = 0.0  # height of the kerb: sidewalks, verges and a median sit this much above the road

    @property
    def half_width(self) -> float:
        return self.median + self.lanes * LANE_WIDTH + 0.3

    def lane_offset(self, lane: int, side: int) -> float:
        """Lateral offset of the centre of lane `lane` (0 = innermost) on `side` (+1 left)."""
        return side * (self.median + (lane + 0.5) * LANE_WIDTH)

    def parking_at(self, s: np.ndarray, side: np.ndarray) -> np.ndarray:
        out = np.zeros(len(s), dtype=bool)
        for s0, s1, sd in self.parking:
            out |= (s >= s0) & (s <= s1) & (side == sd)
        return out

    def zones(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Ground class (N,) uint8 of this road's bands at points (N, 2), a rank (N,) (road 4 >
        parking 3 > sidewalk 2 > verge 1) to merge roads, and the points' (s, d)."""
        s, d = self.path.local(xy)
        ad = np.abs(d)
        side = np.where(d >= 0, 1, -1)
        hw = self.half_width
        pw = np.where(self.parking_at(s, side), self.parking_width, 0.0)
        # Verges alternate between grass and paved/gravel blocks of 25 m.
        block = np.floor(s / 25.0).astype(np.int64)
        paved = hash01(block * 2 + (side > 0), self.verge_seed) < 0.25
        lab = np.where(paved, OTHER_GROUND, TERRAIN).astype(np.uint8)
        rank = np.ones(len(s), dtype=np.int8)
        m = ad <= hw + pw + self.sidewalk
        lab[m], rank[m] = SIDEWALK, 2
        m = (ad > hw) & (ad <= hw + pw)
        lab[m], rank[m] = PARKING, 3
        m = ad <= hw
        lab[m], rank[m] = ROAD, 4
        m = ad <= self.median
        lab[m] = OTHER_GROUND
        return lab, rank, s, d

    def offsets(self, lab: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Height (N,) of this road's bands above the terrain at points with band labels lab
        (N,) from `zones` and lateral offsets d (N,): the carriageway cambered down from its
        centre (or the median's edge), parking at the carriageway's edge height, everything
        beyond the kerb (sidewalk, verge, the median island) `kerb` above the terrain."""
        lane_d = np.clip(np.abs(d) - self.median, 0.0, self.lanes * LANE_WIDTH + 0.3)
        off = np.full(len(d), self.kerb)
        road = (lab == ROAD) | (lab == PARKING)
        off[road] = -self.crown * lane_d[road]
        off[(lab == OTHER_GROUND) & (np.abs(d) <= self.median)] = self.kerb
        return off


def hash01(x: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic uniform [0, 1) numbers from integers (vectorised)."""
    h = (np.asarray(x, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(seed * 0x632BE5AB + 1)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# --------------------------------------------------------------------------------------------
# Terrain: the ground's height without the roads' crowns and kerbs
# --------------------------------------------------------------------------------------------
TERRAIN_STEP = 8.0  # metres between the profile's knots (the hills bend by < 3 cm between them)
MAX_GRADE = 0.12  # steepest slope of the terrain (12 %)


@dataclass(frozen=True)
class Terrain:
    """Ground height of the map as a piecewise-linear profile along one horizontal direction:
    z(p) = interp(p . axis, u, z), flat beyond the end knots. Piecewise planar, so a ray meets it
    exactly (`raycast.terrain_hits`). Hills, a ramp and a grade along `axis`; level across it."""

    axis: np.ndarray  # (2,) unit vector in the map's xy plane
    u: np.ndarray  # (K,) increasing knot positions along axis, metres
    z: np.ndarray  # (K,) heights at the knots, map z

    def height(self, xy: np.ndarray) -> np.ndarray:
        """(N,) terrain height at map points (N, 2)."""
        return np.interp(np.asarray(xy, np.float64).reshape(-1, 2) @ self.axis, self.u, self.z)

    def slope(self, xy: np.ndarray) -> np.ndarray:
        """(N,) dz/du of the profile piece under map points (N, 2) (0 beyond the ends)."""
        q = np.asarray(xy, np.float64).reshape(-1, 2) @ self.axis
        k = np.searchsorted(self.u, q, side="right") - 1
        inside = (k >= 0) & (k < len(self.u) - 1)
        kc = np.clip(k, 0, len(self.u) - 2)
        b = (self.z[kc + 1] - self.z[kc]) / (self.u[kc + 1] - self.u[kc])
        return np.where(inside, b, 0.0)

    def normal(self, xy: np.ndarray) -> np.ndarray:
        """(N, 3) upward unit normals of the terrain at map points (N, 2)."""
        b = self.slope(xy)
        n = np.stack([-b * self.axis[0], -b * self.axis[1], np.ones_like(b)], 1)
        return n / np.linalg.norm(n, axis=1, keepdims=True)


def make_terrain(rng: np.random.Generator, u_start: float, u_lo: float, u_hi: float) -> Terrain:
    """A random profile over [u_lo, u_hi] along a random axis near the map's x: a grade, two
    hills of 35-180 m wavelength and a ramp (a change of grade over 15-35 m) shortly ahead of
    u_start, scaled so no slope exceeds MAX_GRADE; GROUND_Z at u_start."""
    a = rng.uniform(-0.5, 0.5)
    axis = np.array([np.cos(a), np.sin(a)])
    u = np.arange(u_lo, u_hi + TERRAIN_STEP, TERRAIN_STEP)
    q = u - u_start
    g = rng.uniform(-0.04, 0.04) * q
    for slope_range, wl_range in (((0.03, 0.07), (90.0, 180.0)), ((0.01, 0.03), (35.0, 70.0))):
        wl = rng.uniform(*wl_range)
        amp = rng.uniform(*slope_range) * wl / (2 * np.pi)
        g += amp * np.sin(2 * np.pi * q / wl + rng.uniform(0, 2 * np.pi))
    # The ramp: the grade changes by dg over w metres (the integral of a smoothstep).
    dg, w, r0 = rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.06), rng.uniform(15.0, 35.0), rng.uniform(0.0, 60.0)
    x = np.clip((q - r0) / w, 0.0, 1.0)
    g += dg * w * (x ** 3 - 0.5 * x ** 4) + dg * np.maximum(q - r0 - w, 0.0)
    steepest = np.abs(np.diff(g)).max() / TERRAIN_STEP
    if steepest > MAX_GRADE:
        g *= MAX_GRADE / steepest
    z = GROUND_Z + g - np.interp(0.0, q, g)
    return Terrain(axis, u, z)


# --------------------------------------------------------------------------------------------
# Solids
# --------------------------------------------------------------------------------------------
@dataclass
class Primitives:
    """N analytic solids in the map frame (see module docstring for the kinds)."""

    kind: np.ndarray  # (N,) int8
    center: np.ndarray  # (N, 3) float64
    half: np.ndarray  # (N, 3) float64
    yaw: np.ndarray  # (N,) float64
    label: np.ndarray  # (N,) uint8 training class 1..19
    color: np.ndarray  # (N, 3) float32 albedo in [0, 1]
    pattern: np.ndarray  # (N,) int8 PAT_*
    instance: np.ndarray  # (N,) int32: object id (> 0 for vehicles and people), 0 for stuff

    def __len__(self) -> int:
        return len(self.kind)

    def corners(self) -> np.ndarray:
        """(N, 8, 3) corners of each solid's yawed bounding box, map frame."""
        sgn = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
        local = sgn[None] * self.half[:, None, :]
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        out = np.empty_like(local)
        out[..., 0] = c * local[..., 0] - s * local[..., 1] + self.center[:, None, 0]
        out[..., 1] = s * local[..., 0] + c * local[..., 1] + self.center[:, None, 1]
        out[..., 2] = local[..., 2] + self.center[:, None, 2]
        return out


# --------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------
@dataclass
class Scene:
    """One procedural street scene and the ego trajectory through it (map frame)."""

    seed: int
    roads: list[Road]
    prims: Primitives
    velo_poses: np.ndarray  # (F, 4, 4) velodyne -> map
    sun: np.ndarray  # (3,) unit vector towards the sun, map frame
    palette_shift: np.ndarray  # (3,) per-scene white balance
    terrain: Terrain

    def ground_labels(self, xy: np.ndarray) -> np.ndarray:
        """(N,) uint8 ground class (road, parking, sidewalk, other-ground, terrain) at map-frame
        points (N, 2): the band of highest rank over all roads."""
        return self.ground_surface(xy, with_paint=False)[0]

    def ground_offset(self, xy: np.ndarray) -> np.ndarray:
        """(N,) height of the ground above the terrain at map points (N, 2): crown and kerbs of
        the band shown there (`Road.offsets`)."""
        return self.ground_surface(xy, with_paint=False, with_offset=True)[2]

    def ground_height(self, xy: np.ndarray) -> np.ndarray:
        """(N,) map z of the ground surface at map points (N, 2)."""
        return self.terrain.height(xy) + self.ground_offset(xy)

    def ground_surface(self, xy: np.ndarray, with_paint: bool = True, with_offset: bool = False):
        """Ground class (N,) uint8 as `ground_labels`, white paint (N,) float32 in [0, 1]
        (lane lines, parking bays; zeros without `with_paint`) at map-frame points (N, 2), and
        with `with_offset` a third item, the height above the terrain (N,) (`ground_offset`)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        best_lab = best_rank = best_off = None
        paint = np.zeros(len(xy), dtype=bool)
        for road in self.roads:
            lab, rank, s, d = road.zones(xy)
            off = road.offsets(lab, d) if with_offset else None
            if best_lab is None:
                best_lab, best_rank, best_off = lab, rank, off
            else:
                m = rank > best_rank
                best_lab[m], best_rank[m] = lab[m], rank[m]
                if with_offset:
                    best_off[m] = off[m]
            if not with_paint:
                continue
            ad = np.abs(d)
            hw = road.half_width
            dashed = np.mod(s, 9.0) < 4.0
            centre = (np.abs(ad - road.median) < 0.07) & (dashed | (road.median > 0))
            m = centre | (np.abs(ad - (hw - 0.35)) < 0.07)
            for lane in range(1, road.lanes):
                m |= dashed & (np.abs(ad - road.median - lane * LANE_WIDTH) < 0.07)
            m &= ad <= hw
            # Paint of a road only where that road is the ground shown (not across junctions).
            paint |= m & (lab == ROAD) & (rank >= best_rank)
            paint |= (lab == PARKING) & (np.mod(s, 5.5) < 0.12) & (rank >= best_rank)
        paint &= (best_lab == ROAD) | (best_lab == PARKING)
        if with_offset:
            return best_lab, paint.astype(np.float32), best_off
        return best_lab, paint.astype(np.float32)
