"""Geometry of the synthetic faces: a hand-made 3-D mean face in the ibug68 layout,
identity and expression modes, head pose, jaw-contour marching and projection.

Units inside this module are *inter-ocular units* (IOD): the distance between the outer
eye corners (points 36 and 45) of the frontal mean face is 1. Axes: x to image-right,
y down, z toward the camera; the origin is midway between the outer eye corners.

Nothing here is taken from real annotations: the coordinates are built from simple
curves (a superellipse jaw, arcs for brows and eyelids, straight nose bridge) whose few
proportions were chosen by eye against published facial proportions and checked
against the similarity-aligned mean of a real 300-W training set. The frontal, neutral
mean is a little wider and shorter than such a real mean, because a real mean averages
turned heads (narrower) and open mouths (longer); the sampled shapes of
``shapekit.data.synth`` average back to it (about 0.02 inter-ocular distances apart).
"""

from __future__ import annotations

import numpy as np

N_POINTS = 68
JAW = np.arange(0, 17)

# ----------------------------------------------------------------------------------
# The mean face
# ----------------------------------------------------------------------------------

#: Jaw outline of the frontal face: superellipse |x/A|^n + |(y - y0)/(B - y0)|^n = 1 (lower half).
_JAW_A, _JAW_TOP, _JAW_B, _JAW_N = 0.86, -0.01, 1.33, 2.15
#: Depth (z) of the face contour at the temple and at the chin.
_JAW_Z_SIDE, _JAW_Z_CHIN = -0.62, 0.10
#: Half-depth of the horizontal head section on which each jaw point slides under yaw.
_JAW_DEPTH = 0.72


def _superellipse_jaw(a=_JAW_A, top=_JAW_TOP, bottom=_JAW_B, n=_JAW_N, count=17):
    """Return ``count`` points equally spaced by arc length along the lower face outline."""
    phi = np.linspace(0.0, np.pi, 4001)
    c, s = np.cos(phi), np.sin(phi)
    x = -a * np.sign(c) * np.abs(c) ** (2.0 / n)
    y = top + (bottom - top) * np.abs(s) ** (2.0 / n)
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    at = np.linspace(0.0, arc[-1], count)
    return np.interp(at, arc, x), np.interp(at, arc, y)


def _lid(t, outer, inner, up, down, skew):
    """Return (x, y_upper, y_lower) of an eyelid at fractions ``t`` from outer to inner corner."""
    x = outer[0] + t * (inner[0] - outer[0])
    base = outer[1] + t * (inner[1] - outer[1])
    bump = np.sin(np.pi * t ** skew)
    return x, base - up * bump, base + down * bump


def mean_face_3d():
    """Return the (68, 3) mean face in IOD units (x right, y down, z toward the camera)."""
    p = np.zeros((N_POINTS, 3))
    # Jaw 0-16, image-left to image-right.
    jx, jy = _superellipse_jaw()
    p[0:17, 0], p[0:17, 1] = jx, jy
    lateral = np.abs(jx) / _JAW_A
    p[0:17, 2] = _JAW_Z_SIDE + (_JAW_Z_CHIN - _JAW_Z_SIDE) * (1.0 - lateral) ** 0.75
    for side in (-1.0, 1.0):
        # Brows: outer to inner on the image-left (17-21); mirrored for 26-22.
        t = np.linspace(0.0, 1.0, 5)
        bx = side * (0.665 - 0.52 * t)
        by = (-0.175 - 0.015 * t) - 0.095 * np.sin(np.pi * t ** 0.8)
        bz = -0.20 + 0.26 * t ** 0.8
        idx = np.arange(17, 22) if side < 0 else np.arange(26, 21, -1)
        p[idx] = np.stack([bx, by, bz], 1)
        # Eyes: 36 outer, 37-38 upper lid, 39 inner, 40-41 lower lid (image-left eye);
        # the image-right eye is 42 inner, 43-44 upper, 45 outer, 46-47 lower.
        outer, inner = (side * 0.5, 0.0), (side * 0.225, 0.012)
        x, yu, yl = _lid(np.array([1 / 3, 2 / 3]), outer, inner, 0.075, 0.042, 1.0)
        ez = lambda xx: -0.02 - 0.15 * ((np.abs(xx) - 0.225) / 0.275) ** 1.3  # noqa: E731
        if side < 0:
            ring = [(outer[0], outer[1]), (x[0], yu[0]), (x[1], yu[1]), (inner[0], inner[1]),
                    (x[1], yl[1]), (x[0], yl[0])]
            idx = range(36, 42)
        else:
            ring = [(inner[0], inner[1]), (x[1], yu[1]), (x[0], yu[0]), (outer[0], outer[1]),
                    (x[0], yl[0]), (x[1], yl[1])]
            idx = range(42, 48)
        for k, (xx, yy) in zip(idx, ring):
            bulge = 0.03 if yy != 0.0 and abs(yy) > 0.02 else 0.0  # lids lie on the eyeball
            p[k] = (xx, yy, ez(xx) + bulge)
    # Nose bridge 27-30 (27 between the eyes, 30 the tip).
    p[27:31, 0] = 0.0
    p[27:31, 1] = np.linspace(-0.005, 0.43, 4)
    p[27:31, 2] = [0.06, 0.14, 0.23, 0.34]
    # Nostrils 31-35 along the base of the nose.
    p[31:36] = [(-0.17, 0.51, 0.11), (-0.095, 0.548, 0.19), (0.0, 0.575, 0.23),
                (0.095, 0.548, 0.19), (0.17, 0.51, 0.11)]
    # Outer lip 48-59 clockwise on screen from the image-left corner; inner lip 60-67.
    p[48:60] = [(-0.32, 0.80, 0.02), (-0.215, 0.748, 0.14), (-0.10, 0.722, 0.20), (0.0, 0.738, 0.22),
                (0.10, 0.722, 0.20), (0.215, 0.748, 0.14), (0.32, 0.80, 0.02),
                (0.21, 0.885, 0.12), (0.10, 0.925, 0.17), (0.0, 0.937, 0.18),
                (-0.10, 0.925, 0.17), (-0.21, 0.885, 0.12)]
    p[60:68] = [(-0.285, 0.803, 0.04), (-0.105, 0.812, 0.17), (0.0, 0.818, 0.19), (0.105, 0.812, 0.17),
                (0.285, 0.803, 0.04), (0.105, 0.818, 0.17), (0.0, 0.823, 0.19), (-0.105, 0.818, 0.17)]
    return p


MEAN = mean_face_3d()

# Each jaw point slides on a horizontal ellipse (x = a sin t, z = zc + b cos t): frontal
# angle t is +-90 degrees at the temple and 0 at the chin. Under yaw the points that would
# be hidden move to the silhouette of their ellipse ("landmark marching"), which is where
# 300-W annotators put the jaw of a turned face: on the visible outline.
_JAW_THETA = np.sign(MEAN[JAW, 0]) * (np.pi / 2) * (np.abs(MEAN[JAW, 0]) / _JAW_A) ** 0.6


# ----------------------------------------------------------------------------------
# Identity and expression modes
# ----------------------------------------------------------------------------------

def _mask(indices):
    m = np.zeros(N_POINTS, bool)
    m[list(indices)] = True
    return m


_EYE_L, _EYE_R = np.arange(36, 42), np.arange(42, 48)
_BROWS = np.arange(17, 27)
_OUTER_LIP, _INNER_LIP = np.arange(48, 60), np.arange(60, 68)
_MOUTH = np.arange(48, 68)


def _identity_modes(m):
    """Return (K, 68, 3) displacements of one standard deviation of each identity mode."""
    modes = []

    def add(fn):
        d = np.zeros_like(m)
        fn(d)
        modes.append(d)

    x, y = m[:, 0], m[:, 1]

    def face_width(d):
        d[JAW, 0] = 0.055 * x[JAW]
    add(face_width)

    def lower_face_length(d):
        below = y > 0.25
        d[below, 1] = 0.075 * (y[below] - 0.25)
    add(lower_face_length)

    def jaw_squareness(d):
        w = np.exp(-0.5 * ((np.abs(JAW - 8) - 4.0) / 1.6) ** 2)
        d[JAW, 0] = 0.05 * np.sign(x[JAW]) * w
        d[JAW, 1] = 0.02 * w
    add(jaw_squareness)

    def chin_width(d):
        w = np.exp(-0.5 * ((JAW - 8) / 1.8) ** 2)
        d[JAW, 0] = 0.10 * x[JAW] * w
    add(chin_width)

    def nose_length(d):
        d[30:36, 1] = 0.045
        d[29, 1] = 0.03
        d[28, 1] = 0.015
    add(nose_length)

    def nose_width(d):
        d[31:36, 0] = 0.14 * x[31:36]
    add(nose_width)

    def nose_depth(d):
        d[28:36, 2] = 0.2 * m[28:36, 2]
    add(nose_depth)

    def eye_size(d):
        for eye in (_EYE_L, _EYE_R):
            c = m[eye].mean(0)
            d[eye, :2] = 0.09 * (m[eye, :2] - c[:2])
    add(eye_size)

    def eye_opening(d):
        for eye in (_EYE_L, _EYE_R):
            c = m[eye].mean(0)
            d[eye, 1] = 0.18 * (m[eye, 1] - c[1])
    add(eye_opening)

    def eye_spacing(d):
        d[_EYE_L, 0] = -0.025
        d[_EYE_R, 0] = 0.025
    add(eye_spacing)

    def eye_tilt(d):
        for eye, side in ((_EYE_L, -1.0), (_EYE_R, 1.0)):
            c = m[eye].mean(0)
            # rotate so the outer corner rises (positive canthal tilt)
            d[eye, 1] = -side * 0.09 * (m[eye, 0] - c[0])
    add(eye_tilt)

    def brow_height(d):
        d[_BROWS, 1] = -0.035
    add(brow_height)

    def brow_arch(d):
        t = np.array([0.0, 0.7, 1.0, 0.6, 0.0])
        d[17:22, 1] = -0.03 * t
        d[22:27, 1] = -0.03 * t[::-1]
    add(brow_arch)

    def brow_slant(d):
        t = np.linspace(1.0, -1.0, 5)
        d[17:22, 1] = 0.025 * t
        d[22:27, 1] = 0.025 * t[::-1]
    add(brow_slant)

    def mouth_width(d):
        d[_MOUTH, 0] = 0.08 * x[_MOUTH]
    add(mouth_width)

    def upper_lip(d):
        d[49:54, 1] = -0.022
        d[[48, 54], 1] = -0.006
    add(upper_lip)

    def lower_lip(d):
        d[55:60, 1] = 0.028
    add(lower_lip)

    def mouth_height(d):
        d[_MOUTH, 1] = 0.035
    add(mouth_height)

    def face_asymmetry(d):
        d[JAW, 0] = 0.02
        d[8, 0] = 0.03
        d[27:36, 0] = 0.012
        d[_MOUTH, 0] = 0.015
    add(face_asymmetry)

    return np.stack(modes)


IDENTITY_NAMES = (
    "face_width", "lower_face_length", "jaw_squareness", "chin_width", "nose_length", "nose_width",
    "nose_depth", "eye_size", "eye_opening", "eye_spacing", "eye_tilt", "brow_height", "brow_arch",
    "brow_slant", "mouth_width", "upper_lip", "lower_lip", "mouth_height", "face_asymmetry",
)
IDENTITY_MODES = _identity_modes(MEAN)
assert len(IDENTITY_NAMES) == len(IDENTITY_MODES)

EXPRESSION_NAMES = ("mouth_open", "smile", "brow_raise", "frown", "close_left_eye", "close_right_eye")


def _expression(p, e):
    """Return the shapes ``p`` (N, 68, 3) deformed by expression weights ``e`` (N, 6)."""
    p = p.copy()
    opened, smile, raise_, frown, close_l, close_r = (e[:, k] for k in range(6))
    # Mouth open: the mandible rotates about the ear, so lower points drop more the further
    # they are from it; the upper lip stays.
    drop = 0.30 * opened
    jaw_w = np.clip((MEAN[JAW, 1] - 0.2) / (_JAW_B - 0.2), 0.0, 1.0) ** 1.3
    p[:, JAW, 1] += drop[:, None] * jaw_w
    p[:, JAW, 2] -= 0.1 * drop[:, None] * jaw_w
    lower = [55, 56, 57, 58, 59, 65, 66, 67]
    p[:, lower, 1] += drop[:, None] * 0.92
    corners = [48, 54, 60, 64]
    p[:, corners, 1] += drop[:, None] * 0.35
    p[:, corners, 0] *= 1.0 - 0.12 * opened[:, None]
    p[:, [49, 53], 1] += drop[:, None] * 0.04
    # Smile: corners up and out, lips stretch, cheeks lift the lower lids slightly.
    sgn = np.sign(MEAN[:, 0])
    # the pull falls off smoothly from the corners to the middle, so lip lines curve
    mouth = np.arange(48, 68)
    w = np.clip(np.abs(MEAN[mouth, 0]) / 0.32, 0.0, 1.0) ** 1.5
    p[:, mouth, 0] += sgn[mouth] * 0.05 * w * smile[:, None]
    p[:, mouth, 1] -= 0.045 * w * smile[:, None]
    p[:, [56, 57, 58], 1] -= 0.012 * smile[:, None]
    p[:, [40, 41, 46, 47], 1] -= 0.012 * np.clip(smile, 0, None)[:, None]
    # Brow raise and frown (inner brows down and together).
    p[:, _BROWS, 1] -= 0.07 * raise_[:, None]
    p[:, [37, 38, 43, 44], 1] -= 0.012 * np.clip(raise_, 0, None)[:, None]
    inner = np.array([0.0, 0.2, 0.5, 0.8, 1.0])
    p[:, 17:22, 1] += 0.045 * frown[:, None] * inner
    p[:, 22:27, 1] += 0.045 * frown[:, None] * inner[::-1]
    p[:, 17:22, 0] += 0.03 * frown[:, None] * inner
    p[:, 22:27, 0] -= 0.03 * frown[:, None] * inner[::-1]
    # Eye closing: the upper lid comes down onto the lower lid.
    for c, up, low in ((close_l, [37, 38], [41, 40]), (close_r, [43, 44], [47, 46])):
        gap = p[:, low, :] - p[:, up, :]
        p[:, up, :] += 0.96 * c[:, None, None] * gap
    return p


def face_shapes_3d(identity, expression, jitter=None):
    """Return (N, 68, 3) faces (IOD units) for identity weights (N, K) in standard
    deviations, expression weights (N, 6) and optional per-point jitter (N, 68, 3)."""
    identity = np.atleast_2d(identity)
    p = MEAN[None] + np.einsum("nk,kld->nld", identity, IDENTITY_MODES)
    p = _expression(p, np.atleast_2d(expression))
    if jitter is not None:
        p = p + jitter
    return p


# ----------------------------------------------------------------------------------
# Pose and projection
# ----------------------------------------------------------------------------------

def rotation_matrices(yaw, pitch, roll):
    """Return (N, 3, 3) rotations for angles in degrees.

    Positive yaw turns the nose toward image-right, positive pitch tilts the face up
    (the nose moves up in the image), positive roll turns the face clockwise on screen.
    The rotation is roll @ yaw @ pitch (pitch applied first, in head coordinates).
    """
    y, p, r = (np.radians(np.atleast_1d(np.asarray(a, float))) for a in (yaw, pitch, roll))
    n = max(len(y), len(p), len(r))
    y, p, r = (np.broadcast_to(a, (n,)) for a in (y, p, r))
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    one, zero = np.ones(n), np.zeros(n)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1),
                   np.stack([-sy, zero, cy], -1)], -2)
    # y points down, so tilting the face up moves points with z > 0 toward -y.
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1),
                   np.stack([zero, sp, cp], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    return rz @ ry @ rx, ry @ rx


def march_jaw(p, rot_no_roll):
    """Return faces ``p`` (N, 68, 3) with each hidden jaw point moved to the silhouette.

    Each jaw point lies on a horizontal ellipse of its face; it keeps its place while
    visible, and is clamped to the ellipse's silhouette angle once the head turns far
    enough to hide it (the far side of a turned face).
    """
    p = p.copy()
    theta = np.broadcast_to(_JAW_THETA, (len(p), 17))
    s = np.sin(theta)
    x, z = p[:, JAW, 0], p[:, JAW, 2]
    safe = np.abs(s) > 1e-6
    a = np.where(safe, np.abs(x) / np.where(safe, np.abs(s), 1.0), 0.0)
    # the chin point's ellipse width: that of its neighbours
    a[:, 8] = 0.5 * (a[:, 7] + a[:, 9])
    b = _JAW_DEPTH
    zc = z - b * np.cos(theta)
    xc = x - a * s
    # image x of the ellipse: R00 a sin t + R02 b cos t + const (roll is in-plane)
    r00, r02 = rot_no_roll[:, 0, 0][:, None], rot_no_roll[:, 0, 2][:, None]
    t_max = np.arctan2(r00 * a, r02 * b)
    t_min = t_max - np.pi
    t = np.clip(theta, t_min, t_max)
    p[:, JAW, 0] = xc + a * np.sin(t)
    p[:, JAW, 2] = zc + b * np.cos(t)
    return p


#: Pivot of head rotation (IOD units): roughly the top of the neck.
PIVOT = np.array([0.0, 0.6, -0.9])


def project(points3d, rot, distance):
    """Return (N, P, 2) perspective projections (IOD units at the pivot's depth).

    ``distance`` (N,) is the camera distance from the pivot in IOD units; large values
    tend to weak perspective.
    """
    q = np.einsum("nij,npj->npi", rot, points3d - PIVOT) + PIVOT
    d = np.asarray(distance, float)[:, None]
    f = d / (d - (q[..., 2] - PIVOT[2]))
    return q[..., :2] * f[..., None], q
