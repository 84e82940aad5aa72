"""Vectorised ray casting against the analytic solids of a synthetic scene and its ground.

Rays come in 2D bundles that share one origin: a camera's pixels (H, W) or a spinning LiDAR's
(beams, azimuth steps). A cheap broad phase bounds every solid in the bundle's own 2D index
space (projected bounding box for a pinhole camera, elevation / azimuth interval for a LiDAR), so
each solid is intersected only with the rays of its block; the loop runs over solids, the rays
of a block are one numpy expression. All coordinates are in the scene's map frame.

The ground is the scene's height field: a piecewise-planar terrain (met exactly, piece by
piece along each ray) raised by the roads' crowns and kerbs (`Scene.ground_offset`, a few
centimetres to 0.2 m), which a short fixed-point iteration folds in: intersect the terrain
lifted by the offset found at the previous hit. Rays grazing a kerb's face end on the surface
at either side of it (within the kerb's height).

Hit ids: >= 0 a solid's index, GROUND (-2) the ground, SKY (-1) nothing.
"""
from __future__ import annotations

import numpy as np

from .scene import BOX, CYLINDER, ELLIPSOID, Primitives, Scene, Terrain

SKY, GROUND = -1, -2
NEAR = 90.0  # metres: ground hits nearer than this get the roads' crowns and kerbs
_EPS = 1e-6
_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])


def _to_local(prims: Primitives, i: int, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(prims.yaw[i]), np.sin(prims.yaw[i])
    R = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # map -> solid
    return R @ (origin - prims.center[i]), dirs @ R.T


def intersect(prims: Primitives, i: int, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Ray parameter t (M,) of the first entry into solid i of rays origin + t * dirs (dirs (M, 3)),
    inf where a ray misses (or starts inside)."""
    o, d = _to_local(prims, i, origin, dirs)
    h = prims.half[i]
    kind = prims.kind[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == BOX:
            dd = np.where(np.abs(d) < 1e-12, 1e-12, d)
            inv = 1.0 / dd
            t1 = (-h - o) * inv
            t2 = (h - o) * inv
            tn = np.minimum(t1, t2).max(axis=1)
            tf = np.maximum(t1, t2).min(axis=1)
            return np.where((tn <= tf) & (tn > _EPS), tn, np.inf)
        if kind == CYLINDER:
            r, hz = h[0], h[2]
            a = d[:, 0] ** 2 + d[:, 1] ** 2
            b = 2.0 * (o[0] * d[:, 0] + o[1] * d[:, 1])
            cc = o[0] ** 2 + o[1] ** 2 - r * r
            disc = b * b - 4.0 * a * cc
            ts = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * np.where(a > 0, a, 1.0))
            zs = o[2] + ts * d[:, 2]
            side = (disc >= 0) & (a > 1e-12) & (ts > _EPS) & (np.abs(zs) <= hz)
            t = np.where(side, ts, np.inf)
            if abs(o[2]) > hz:  # caps are only reachable from above / below
                zc = hz if o[2] > 0 else -hz
                tc = (zc - o[2]) / np.where(np.abs(d[:, 2]) > 1e-12, d[:, 2], 1e-12)
                xc = o[0] + tc * d[:, 0]
                yc = o[1] + tc * d[:, 1]
                cap = (tc > _EPS) & (xc * xc + yc * yc <= r * r)
                t = np.where(cap & (tc < t), tc, t)
            return t
        if kind == ELLIPSOID:
            os_ = o / h
            ds = d / h
            a = np.sum(ds * ds, axis=1)
            b = 2.0 * ds @ os_
            cc = float(os_ @ os_) - 1.0
            disc = b * b - 4.0 * a * cc
            t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
            return np.where((disc >= 0) & (t > _EPS), t, np.inf)
    raise ValueError(f"unknown solid kind {kind} at index {i}")


def surface_normals(prims: Primitives, ids: np.ndarray, points: np.ndarray,
                    terrain: Terrain | None = None) -> np.ndarray:
    """Outward unit normals (N, 3), map frame, at hit points (N, 3) of solids ids (N,) (>= 0);
    where ids == GROUND the terrain's normal (or (0, 0, 1) without a terrain)."""
    n = np.zeros_like(points)
    n[:, 2] = 1.0
    g = ids < 0
    if terrain is not None and g.any():
        n[g] = terrain.normal(points[g, :2])
    m = ids >= 0
    if not m.any():
        return n
    idx = ids[m]
    c, s = np.cos(prims.yaw[idx]), np.sin(prims.yaw[idx])
    rel = points[m] - prims.center[idx]
    lx = c * rel[:, 0] + s * rel[:, 1]
    ly = -s * rel[:, 0] + c * rel[:, 1]
    lz = rel[:, 2]
    h = prims.half[idx]
    kind = prims.kind[idx]
    local = np.zeros((len(idx), 3))
    # Box: the face whose slab the point is closest to leaving.
    q = np.stack([lx / h[:, 0], ly / h[:, 1], lz / h[:, 2]], 1)
    ax = np.argmax(np.abs(q), axis=1)
    box = kind == BOX
    local[box, ax[box]] = np.sign(q[box, ax[box]])
    # Cylinder: the cap when the hit lies on it, else radial.
    cyl = kind == CYLINDER
    cap = cyl & (np.abs(np.abs(lz) - h[:, 2]) < 1e-4)
    side = cyl & ~cap
    local[side, 0], local[side, 1] = lx[side], ly[side]
    local[cap, 2] = np.sign(lz[cap])
    ell = kind == ELLIPSOID
    local[ell] = (np.stack([lx, ly, lz], 1) / (h * h))[ell]
    local /= np.maximum(np.linalg.norm(local, axis=1, keepdims=True), 1e-12)
    n[m, 0] = c * local[:, 0] - s * local[:, 1]
    n[m, 1] = s * local[:, 0] + c * local[:, 1]
    n[m, 2] = local[:, 2]
    return n


def terrain_hits(terrain: Terrain, origin: np.ndarray, dirs: np.ndarray, max_t: float,
                 lift: np.ndarray | float = 0.0) -> np.ndarray:
    """t (M,) where rays origin (3,) + t * dirs (M, 3) first meet the terrain raised by `lift`
    (scalar or (M,)), inf if not within max_t. Exact: each ray walks the profile's pieces from
    the one under the origin, in the direction it moves along the axis, solving a line-plane
    equation per piece; rays leave the walk when they hit, pass max_t, or climb above the
    highest ground still ahead of them."""
    U, Z = terrain.u, terrain.z
    M = len(dirs)
    lift = np.broadcast_to(np.asarray(lift, np.float64), (M,))
    ou = float(origin[:2] @ terrain.axis)
    du = dirs[:, :2] @ terrain.axis
    dz = dirs[:, 2]
    step = np.where(du > 1e-12, 1, np.where(du < -1e-12, -1, 0))
    n = len(U) - 1
    # Pieces are numbered 0..n+1: piece p spans u in [E[p], E[p + 1]] with E = (-inf, U, inf)
    # and height A[p] + Bs[p] * u (the two outer pieces level at the end knots' heights).
    E = np.concatenate([[-np.inf], U, [np.inf]])
    Bs = np.concatenate([[0.0], np.diff(Z) / np.diff(U), [0.0]])
    A = np.concatenate([[Z[0]], Z[:-1] - Bs[1:-1] * U[:-1], [Z[-1]]])
    # Highest ground from piece p on when walking up (ahead) or down (behind) the axis.
    ahead = np.concatenate([np.maximum.accumulate(Z[::-1])[::-1], [Z[-1]]])  # knots p-1.. -> ahead[p]
    ahead = np.concatenate([[Z.max()], ahead])
    behind = np.concatenate([[Z[0]], np.maximum.accumulate(Z), [Z.max()]])  # knots ..p -> behind[p]
    p0 = int(np.searchsorted(U, ou, side="right"))  # 0..n+1
    out = np.full(M, np.inf)
    idx = np.flatnonzero(np.ones(M, dtype=bool))
    t_in = np.zeros(M)
    p = np.full(M, p0)
    # Per ray: f(t) = ray height - ground height = (oz - lift - A - Bs ou) + (dz - Bs du) t.
    oz = origin[2] - lift
    with np.errstate(divide="ignore", invalid="ignore"):
        while idx.size:
            st = step[idx]
            b = Bs[p]
            f0 = oz[idx] - A[p] - b * ou
            r = dz[idx] - b * du[idx]
            ti = t_in[idx]
            t_out = (E[p + (st > 0)] - ou) / du[idx]  # +-inf at the outer pieces' far ends
            t_out[st == 0] = np.inf
            f_in = f0 + r * ti
            root = np.where(f_in <= 0, ti, -f0 / r)  # already below on entry: hit at the entry
            hit = (root <= t_out) & (root <= max_t) & ((r < 0) | (f_in <= 0)) & (root >= ti)
            out[idx[hit]] = root[hit]
            # Climbing and above all ground still ahead of it: the ray never comes down.
            top = np.where(st > 0, ahead[np.minimum(p + 1, n + 1)], behind[p])
            climbing_clear = (r >= 0) & (dz[idx] >= 0) & (oz[idx] + dz[idx] * np.minimum(t_out, max_t) > top)
            keep = ~(hit | (t_out >= max_t) | climbing_clear)
            idx = idx[keep]
            t_in[idx] = t_out[keep]
            p = p[keep] + st[keep]
    return out


def ground_hits(scene: Scene, origin: np.ndarray, dirs: np.ndarray, max_t: float, passes: int = 2,
                bisections: int = 8) -> np.ndarray:
    """t (...) where rays origin (3,) + t * dirs (..., 3) meet the scene's ground (terrain plus
    crown / kerb offsets; module docstring), inf if never or beyond max_t."""
    shape = dirs.shape[:-1]
    D = dirs.reshape(-1, 3)
    lift = np.zeros(len(D))
    t = terrain_hits(scene.terrain, origin, D, max_t)
    # Crowns and kerbs matter only where the voxel grid and the LiDAR reach: beyond NEAR
    # metres the ground is the bare terrain (a camera pixel there covers > 0.1 m anyway).
    todo = np.flatnonzero(t <= NEAR)
    for _ in range(passes):
        off = scene.ground_offset(origin[:2] + t[todo, None] * D[todo, :2])
        changed = np.abs(off - lift[todo]) > 1e-3
        todo = todo[changed]
        lift[todo] = off[changed]
        if not todo.size:
            break
        t[todo] = terrain_hits(scene.terrain, origin, D[todo], max_t, lift[todo])
        todo = todo[np.isfinite(t[todo])]
    if todo.size:
        # Hits that still disagree with the band under them cross a step (a kerb): the hits
        # on the two heights bracket its face; bisect on "below the ground" to find it.
        off = scene.ground_offset(origin[:2] + t[todo, None] * D[todo, :2])
        bad = np.abs(off - lift[todo]) > 1e-3
        todo, off = todo[bad], off[bad]
        t2 = terrain_hits(scene.terrain, origin, D[todo], max_t, off)
        lo, hi = np.minimum(t[todo], t2), np.maximum(t[todo], t2)
        Dt = D[todo]

        def below(tt: np.ndarray) -> np.ndarray:
            p = origin + np.where(np.isfinite(tt), tt, 0.0)[:, None] * Dt
            return p[:, 2] <= scene.ground_height(p[:, :2]) + 1e-9

        ok = np.isfinite(hi) & ~below(lo) & below(hi)
        for _ in range(bisections):
            mid = 0.5 * (lo + hi)
            b = below(mid)
            hi, lo = np.where(b, mid, hi), np.where(b, lo, mid)
        t[todo[ok]] = hi[ok]
    return t.reshape(shape)


def camera_blocks(prims: Primitives, T_cam_map: np.ndarray, K: np.ndarray, size: tuple[int, int],
                  near: float = 0.05) -> list[tuple[int, slice, slice]]:
    """Pixel blocks (index, rows, cols) of the solids that may be seen by a pinhole camera
    (T_cam_map (4, 4): map -> optical frame; K (3, 3); size (H, W)). The bound is the box hull
    of the solid's bounding-box corners clipped to z >= near, so it is exact for a convex hull."""
    H, W = size
    P = prims.corners()  # (N, 8, 3)
    cam = P @ T_cam_map[:3, :3].T + T_cam_map[:3, 3]
    z = cam[..., 2]
    # Points where the box edges cross the near plane, so boxes around the camera are bounded.
    a, b = cam[:, _EDGES[:, 0]], cam[:, _EDGES[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    cross = (za - near) * (zb - near) < 0
    f = (near - za) / np.where(cross, zb - za, 1.0)
    xp = a + f[..., None] * (b - a)
    pts = np.concatenate([cam, xp], axis=1)
    ok = np.concatenate([z >= near, cross], axis=1)
    zz = np.where(ok, pts[..., 2], 1.0)
    u = K[0, 0] * pts[..., 0] / zz + K[0, 2]
    v = K[1, 1] * pts[..., 1] / zz + K[1, 2]
    umin = np.where(ok, u, np.inf).min(1)
    umax = np.where(ok, u, -np.inf).max(1)
    vmin = np.where(ok, v, np.inf).min(1)
    vmax = np.where(ok, v, -np.inf).max(1)
    c0 = np.clip(np.floor(umin) - 1, 0, W).astype(np.int64)
    c1 = np.clip(np.ceil(umax) + 2, 0, W).astype(np.int64)
    r0 = np.clip(np.floor(vmin) - 1, 0, H).astype(np.int64)
    r1 = np.clip(np.ceil(vmax) + 2, 0, H).astype(np.int64)
    vis = ok.any(1) & (c1 > c0) & (r1 > r0)
    return [(int(i), slice(r0[i], r1[i]), slice(c0[i], c1[i])) for i in np.flatnonzero(vis)]


def lidar_blocks(prims: Primitives, T_velo_map: np.ndarray, elevations: np.ndarray, n_azimuth: int,
                 max_range: float) -> list[tuple[int, slice, slice]]:
    """(index, beam rows, azimuth cols) blocks of the solids within max_range of a spinning LiDAR.

    Beams (rows) have `elevations` (B,) radians in decreasing order and equal steps; column j
    looks at azimuth -pi + (j + 0.5) * 2 pi / n_azimuth in the velodyne frame. A block that wraps
    around azimuth pi is returned as two blocks.
    """
    T_map_velo = np.linalg.inv(T_velo_map)
    o = T_map_velo[:3, 3]
    sensor_yaw = np.arctan2(T_map_velo[1, 0], T_map_velo[0, 0])
    c, s = np.cos(prims.yaw), np.sin(prims.yaw)
    rel = o[:2] - prims.center[:, :2]
    lx = c * rel[:, 0] + s * rel[:, 1]
    ly = -s * rel[:, 0] + c * rel[:, 1]
    h = prims.half
    dmin = np.hypot(np.maximum(np.abs(lx) - h[:, 0], 0), np.maximum(np.abs(ly) - h[:, 1], 0))
    dmax = np.hypot(np.abs(lx) + h[:, 0], np.abs(ly) + h[:, 1])
    ztop = prims.center[:, 2] + h[:, 2] - o[2]
    zbot = prims.center[:, 2] - h[:, 2] - o[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        e_hi = np.arctan2(ztop, np.where(ztop > 0, dmin, dmax))
        e_lo = np.arctan2(zbot, np.where(zbot < 0, dmin, dmax))
    step = (elevations[0] - elevations[-1]) / max(len(elevations) - 1, 1)
    # The bounds above are for a level sensor with the velodyne's yaw. A pitched / rolled one
    # (tilt = angle between its z and the map's) sees each direction's elevation moved by at
    # most the tilt and its azimuth by at most about tilt * tan(|elevation| + tilt): widen.
    tilt = float(np.arccos(np.clip(T_map_velo[2, 2], -1.0, 1.0)))
    e_max = float(np.max(np.abs(elevations)))
    pad_rows = int(np.ceil(tilt / step))
    pad_cols = int(np.ceil(1.5 * tilt * np.tan(min(e_max + tilt, 1.4)) / (2 * np.pi / n_azimuth)))
    r0 = np.clip(np.floor((elevations[0] - e_hi) / step) - 1 - pad_rows, 0, len(elevations)).astype(np.int64)
    r1 = np.clip(np.ceil((elevations[0] - e_lo) / step) + 2 + pad_rows, 0, len(elevations)).astype(np.int64)
    # Azimuth interval from the footprint's corners, relative to the direction of its centre.
    corners = prims.corners()[:, ::2, :2]  # (N, 4, 2): the 4 distinct xy corners
    az = np.arctan2(corners[..., 1] - o[1], corners[..., 0] - o[0]) - sensor_yaw
    azc = np.arctan2(prims.center[:, 1] - o[1], prims.center[:, 0] - o[0]) - sensor_yaw
    relaz = np.angle(np.exp(1j * (az - azc[:, None])))
    lo = azc + relaz.min(1)
    hi = azc + relaz.max(1)
    dstep = 2 * np.pi / n_azimuth
    c0 = np.floor((lo + np.pi) / dstep).astype(np.int64) - 1 - pad_cols
    c1 = np.ceil((hi + np.pi) / dstep).astype(np.int64) + 2 + pad_cols
    inside = dmin <= 0.0
    near = (dmin < max_range) & (r1 > r0)
    out: list[tuple[int, slice, slice]] = []
    for i in np.flatnonzero(near):
        rows = slice(int(r0[i]), int(r1[i]))
        a0, a1 = int(c0[i]), int(c1[i])
        if inside[i] or a1 - a0 >= n_azimuth:
            out.append((int(i), rows, slice(0, n_azimuth)))
            continue
        a0 %= n_azimuth
        a1 = a0 + (int(c1[i]) - int(c0[i]))
        if a1 <= n_azimuth:
            out.append((int(i), rows, slice(a0, a1)))
        else:
            out.append((int(i), rows, slice(a0, n_azimuth)))
            out.append((int(i), rows, slice(0, a1 - n_azimuth)))
    return out


def cast(scene: Scene, origin: np.ndarray, dirs: np.ndarray, blocks: list[tuple[int, slice, slice]],
         max_t: float) -> tuple[np.ndarray, np.ndarray]:
    """First hits of the ray bundle origin (3,) + t * dirs (H, W, 3) (unit dirs, map frame)
    in the scene's ground and solids.

    Returns t (H, W) float64 (inf = sky) and hit ids (H, W) int32 (solid index, GROUND, SKY).
    """
    prims = scene.prims
    t = ground_hits(scene, origin, dirs, max_t)
    ids = np.where(np.isfinite(t), GROUND, SKY).astype(np.int32)
    for i, rs, cs in blocks:
        d = dirs[rs, cs]
        th = intersect(prims, i, origin, d.reshape(-1, 3)).reshape(d.shape[:2])
        tb = t[rs, cs]
        better = th < tb
        if better.any():
            tb[better] = th[better]
            ids[rs, cs][better] = i
    return t, ids
