"""Drawing of the SYNTHETIC faces (numpy, scipy.ndimage and scikit-image's sample images).

The picture is built back to front: background (a random crop of one of
scikit-image's sample images, or a plain gradient), long hair behind the head, neck
and clothes, head and face skin lit by one directional light on an ellipsoid head,
ears, shading of eye sockets, nose and mouth, eyes (sclera, iris, pupil, lids and
lashes), brows, nose, lips (and teeth and the dark mouth when open), hair on top, an
optional occluder, then global colour, blur and noise. Every feature is drawn from
the landmarks of the posed face (and a few extra 3-D head points posed the same way),
so the landmarks sit on the features by construction.
"""

from __future__ import annotations

import numpy as np
import skimage.data
from scipy import ndimage

from shapekit.data import _synth_geometry as geo
from shapekit.data._synth_raster import (bilinear, blend, catmull_rom, ellipse_polygon, gaussian_blob, multiply,
                                         polygon_alpha, resample, soft_polygon, stroke_polygon)
from shapekit.io.images import LUMA

# ----------------------------------------------------------------------------------
# Appearance
# ----------------------------------------------------------------------------------

#: scikit-image sample images used as backgrounds, with the region (rows, cols as
#: fractions) that crops may come from. The astronaut's face is left out so that no
#: real face appears behind a synthetic one.
BACKGROUNDS = {
    "astronaut": (0.55, 1.0, 0.0, 1.0), "coffee": (0, 1, 0, 1), "chelsea": (0, 1, 0, 1), "rocket": (0, 1, 0, 1),
    "brick": (0, 1, 0, 1), "grass": (0, 1, 0, 1), "gravel": (0, 1, 0, 1), "camera": (0, 1, 0, 1),
    "coins": (0, 1, 0, 1), "moon": (0, 1, 0, 1), "page": (0, 1, 0, 1), "text": (0, 1, 0, 1),
    "hubble_deep_field": (0, 1, 0, 1), "immunohistochemistry": (0, 1, 0, 1), "retina": (0, 1, 0, 1),
    "clock": (0, 1, 0, 1), "cell": (0, 1, 0, 1),
}
_BG_NAMES = tuple(BACKGROUNDS)
_BG_CACHE: dict = {}

_SKIN_TONES = np.array([  # light to dark, sRGB 0..1
    (0.98, 0.84, 0.74), (0.93, 0.76, 0.63), (0.85, 0.66, 0.52), (0.74, 0.55, 0.41),
    (0.58, 0.40, 0.28), (0.42, 0.28, 0.19), (0.30, 0.20, 0.14)])
_HAIR_COLOURS = np.array([
    (0.05, 0.04, 0.04), (0.16, 0.10, 0.07), (0.30, 0.19, 0.11), (0.50, 0.35, 0.20),
    (0.78, 0.64, 0.40), (0.55, 0.22, 0.10), (0.62, 0.60, 0.58), (0.88, 0.87, 0.84)])
_HAIR_WEIGHTS = np.array([0.26, 0.24, 0.17, 0.1, 0.09, 0.05, 0.06, 0.03])
_EYE_COLOURS = np.array([
    (0.20, 0.11, 0.06), (0.33, 0.20, 0.10), (0.30, 0.42, 0.55), (0.35, 0.45, 0.30), (0.45, 0.40, 0.25)])
_HAIR_STYLES = ("bald", "short", "long", "fringe", "bun")
_OCCLUDERS = ("patch", "hand", "bar", "glasses")
_N_APPEARANCE = 41


def _pick(weights, u):
    c = np.cumsum(weights) / np.sum(weights)
    return int(min(np.searchsorted(c, u, side="right"), len(weights) - 1))


def default_appearance():
    """Return the appearance of a plain, evenly lit face on a grey background."""
    return dict(skin=[0.85, 0.66, 0.52], light=[-0.3, -0.4, 0.87], ambient=0.5, light_colour=[1.0, 1.0, 1.0],
                hair_style="short", hair=[0.16, 0.10, 0.07], hairline=-0.72, hair_volume=1.08,
                eye=[0.33, 0.20, 0.10], gaze=[0.0, 0.0], brow_thickness=1.0, brow_darkness=0.8,
                lips=[0.72, 0.38, 0.36], background="plain", background_colour=[0.55, 0.58, 0.6],
                clothes=[0.2, 0.25, 0.4], blur=0.0, noise=0.0, grey=False, contrast=1.0, gamma=1.0,
                brightness=1.0, occluder=None, ear_size=1.0, stubble=0.0, sheen=0.08)


def draw_appearance(rng, occlusion):
    """Return ``(appearance, texture_seed)`` for one face, drawn from ``rng`` after its shape
    block. A fixed count of numbers is drawn whatever the outcome, so the options never
    shift the draws of later faces or fields."""
    a = rng.random(_N_APPEARANCE)
    texture_seed = int(rng.integers(0, 2 ** 62))
    tone = a[0] * (len(_SKIN_TONES) - 1)
    k = int(tone)
    skin = _SKIN_TONES[k] + (tone - k) * (_SKIN_TONES[min(k + 1, len(_SKIN_TONES) - 1)] - _SKIN_TONES[k])
    skin = skin * (1.0 + 0.08 * (a[1] - 0.5) * np.array([1.0, -0.3, -1.0]))  # warmer / cooler
    az = 2 * np.pi * a[2]
    spread = 0.25 + 0.65 * a[3]
    light = np.array([spread * np.cos(az), spread * np.sin(az) - 0.25, 1.0])
    light /= np.linalg.norm(light)
    warm = a[5] - 0.5
    light_colour = 1.0 + 0.12 * warm * np.array([1.0, 0.0, -1.0])
    style = _HAIR_STYLES[_pick([0.08, 0.4, 0.3, 0.12, 0.1], a[6])]
    hair = _HAIR_COLOURS[_pick(_HAIR_WEIGHTS, a[7])] * (0.85 + 0.3 * a[8])
    if a[0] > 0.6 and a[7] > 0.5:  # fair hair is rarer on darker skin
        hair = _HAIR_COLOURS[1] * (0.8 + 0.4 * a[8])
    eye = _EYE_COLOURS[_pick([0.45, 0.2, 0.15, 0.1, 0.1], a[10])]
    if a[0] > 0.45:
        eye = _EYE_COLOURS[_pick([0.7, 0.3], a[10])]
    lips = skin * np.array([0.86, 0.58, 0.58]) + np.array([0.06, 0.0, 0.0]) * a[15]
    lips = lips * (0.85 + 0.25 * a[16])
    bg_plain = a[18] < 0.15
    occluder = None
    if a[25] < occlusion:
        kind = _OCCLUDERS[_pick([0.4, 0.3, 0.15, 0.15], a[26])]
        occluder = dict(kind=kind, u=float(a[27]), v=float(a[28]), size=float(a[29]), colour=float(a[30]),
                        angle=float(a[31]))
    app = dict(
        skin=[float(c) for c in np.clip(skin, 0, 1)],
        light=[float(c) for c in light],
        ambient=float(0.3 + 0.35 * a[4]),
        light_colour=[float(c) for c in light_colour],
        hair_style=style,
        hair=[float(c) for c in np.clip(hair, 0, 1)],
        hairline=float(-0.62 - 0.25 * a[9]),
        hair_volume=float(1.04 + 0.14 * a[8]),
        eye=[float(c) for c in eye],
        gaze=[float(0.5 * (a[11] - 0.5)), float(0.3 * (a[12] - 0.5))],
        brow_thickness=float(0.7 + 0.8 * a[13]),
        brow_darkness=float(0.55 + 0.4 * a[14]),
        lips=[float(c) for c in np.clip(lips, 0, 1)],
        background="plain" if bg_plain else _BG_NAMES[int(a[17] * len(_BG_NAMES)) % len(_BG_NAMES)],
        background_colour=[float(c) for c in 0.2 + 0.6 * np.array([a[19], a[20], a[21]])],
        clothes=[float(c) for c in 0.1 + 0.7 * np.array([a[32], a[33], a[34]]) ** 1.5],
        blur=float(1.4 * a[22] ** 2),
        noise=float(0.045 * a[23] ** 2),
        grey=bool(a[24] < 0.08),
        contrast=float(0.75 + 0.5 * a[35]),
        gamma=float(0.75 + 0.6 * a[36]),
        brightness=float(0.8 + 0.4 * a[37]),
        occluder=occluder,
        ear_size=float(0.85 + 0.3 * a[38]),
        sheen=float(0.03 + 0.15 * a[40]),
        stubble=float(max(0.0, a[39] - 0.8) * 3.0),
    )
    return app, texture_seed


# ----------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------

def _background_image(name):
    img = _BG_CACHE.get(name)
    if img is None:
        raw = np.asarray(getattr(skimage.data, name)())
        if raw.dtype == bool:
            raw = raw.astype(np.uint8) * 255
        if raw.ndim == 2:
            raw = np.repeat(raw[..., None], 3, axis=2)
        raw = raw[..., :3].astype(np.float32) / 255.0
        r0, r1, c0, c1 = BACKGROUNDS[name]
        h, w = raw.shape[:2]
        raw = raw[int(r0 * h):int(r1 * h), int(c0 * w):int(c1 * w)]
        step = int(np.ceil(max(raw.shape[:2]) / 640))  # big sources: keep ~640 px, enough detail
        if step > 1:
            raw = ndimage.uniform_filter(raw, (step, step, 1))[::step, ::step]
        img = np.ascontiguousarray(raw)
        _BG_CACHE[name] = img
    return img


def _background(app, size, rng):
    if app["background"] == "plain":
        base = np.asarray(app["background_colour"], np.float32)
        g = np.linspace(-1.0, 1.0, size, dtype=np.float32)
        ang = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(ang) * g[None, :] + np.sin(ang) * g[:, None]
        img = base[None, None] * (1.0 + 0.25 * ramp[..., None])
        return np.ascontiguousarray(np.clip(img, 0, 1), dtype=np.float32)
    src = _background_image(app["background"])
    h, w = src.shape[:2]
    side = rng.uniform(0.3, 0.95) * min(h, w)
    cx = rng.uniform(side / 2, w - side / 2)
    cy = rng.uniform(side / 2, h - side / 2)
    flip = rng.random() < 0.5
    defocus = rng.random() < 0.6
    sigma = rng.uniform(0.5, 3.5) * size / 256 if defocus else 0.0
    gains = rng.uniform(0.7, 1.3, 3).astype(np.float32)
    sat = np.float32(rng.uniform(0.3, 1.1))
    # a defocused background is made at a lower resolution and blurred there (cheaper)
    f = 4 if sigma > 3.0 else 2 if sigma > 1.5 else 1
    n = -(-size // f)
    t = (np.arange(n, dtype=np.float64) + 0.5) / n - 0.5
    xs = cx + (-t if flip else t) * side
    ys = cy + t * side
    # channel gains and (de)saturation in one linear colour map, on the small image
    colour = np.diag(gains) @ (sat * np.eye(3, dtype=np.float32) + (1.0 - sat) / 3.0)
    img = resample(src, xs, ys)
    img = (img.reshape(-1, 3) @ colour.astype(np.float32)).reshape(img.shape)
    if sigma > 0:
        img = ndimage.gaussian_filter(img, (sigma / f, sigma / f, 0), truncate=3.0)
    if f > 1:
        u = (np.arange(size) + 0.5) / f - 0.5
        img = resample(img, u, u)
    return np.ascontiguousarray(np.clip(img, 0, 1), dtype=np.float32)


def _normals(layout, centre, axes, xs, ys):
    """Return camera-space unit normals (h, w, 3) and a hit mask of an ellipsoid of the head
    (IOD units, head coordinates) seen under pixels ``xs`` (w,), ``ys`` (h,)."""
    rot = layout.rot[0]
    c = rot @ (np.asarray(centre, float) - geo.PIVOT) + geo.PIVOT
    d = float(layout.distance[0])
    f = d / (d - (c[2] - geo.PIVOT[2]))
    m = rot @ np.diag(1.0 / np.asarray(axes, float) ** 2) @ rot.T
    px = ((xs - layout.offset[0, 0]) / layout.scale[0]) / f - c[0]
    py = ((ys - layout.offset[0, 1]) / layout.scale[0]) / f - c[1]
    dx, dy = px[None, :], py[:, None]
    b = m[0, 2] * dx + m[1, 2] * dy
    cc = m[0, 0] * dx * dx + 2 * m[0, 1] * dx * dy + m[1, 1] * dy * dy - 1.0
    disc = b * b - m[2, 2] * cc
    hit = disc >= 0
    dz = (-b + np.sqrt(np.maximum(disc, 0.0))) / m[2, 2]
    dzb = np.broadcast_to(dz, disc.shape)
    n = np.stack([m[0, 0] * dx + m[0, 1] * dy + m[0, 2] * dzb,
                  m[1, 0] * dx + m[1, 1] * dy + m[1, 2] * dzb,
                  m[2, 0] * dx + m[2, 1] * dy + m[2, 2] * dzb], -1)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
    return n.astype(np.float32), hit


def _lambert(normals, app):
    light = np.asarray(app["light"], np.float32)
    ndl = normals @ light
    wrap = 0.3  # soft wrap-around lighting: skin scatters light past the terminator
    diffuse = np.clip((ndl + wrap) / (1 + wrap), 0.0, 1.0)
    amb = app["ambient"]
    return amb + (1.0 - amb) * diffuse


def _ellipse_outline(layout, centre, axes, n=64):
    """Return (n, 2) pixel outline of an ellipsoid (head coordinates) posed like the face.

    The outline is the silhouette of the ellipsoid under orthographic projection,
    scaled by the perspective factor at its centre.
    """
    rot = layout.rot[0]
    m = rot @ np.diag(1.0 / np.asarray(axes, float) ** 2) @ rot.T
    # silhouette = projection of the ellipsoid: Schur complement of the z row/column
    q = m[:2, :2] - np.outer(m[:2, 2], m[2, :2]) / m[2, 2]
    evals, evecs = np.linalg.eigh(q)
    radii = 1.0 / np.sqrt(evals)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = (evecs @ (radii[:, None] * np.stack([np.cos(t), np.sin(t)])))
    c = rot @ (np.asarray(centre, float) - geo.PIVOT) + geo.PIVOT
    d = float(layout.distance[0])
    f = d / (d - (c[2] - geo.PIVOT[2]))
    xy = (pts.T + c[:2]) * f
    return layout.to_pixels(xy[None])[0]


def _proj(layout, pts3d):
    return layout.project(np.asarray(pts3d, float)[None])[0][0]


def _paint_poly(img, poly, colour, sigma=0.0, opacity=1.0, ss=4):
    r = soft_polygon(poly, img.shape, sigma, ss)
    if r is not None:
        y0, x0, a = r
        blend(img, y0, x0, a * opacity if opacity != 1.0 else a, np.asarray(colour, np.float32))
    return r


def _shade_poly(img, poly, factor, sigma=0.0):
    r = soft_polygon(poly, img.shape, sigma)
    if r is not None:
        y0, x0, a = r
        multiply(img, y0, x0, a, factor)
    return r


def _shade_blob(img, centre, sx, sy, angle, factor, strength=1.0):
    r = gaussian_blob(img.shape, centre, sx, sy, angle, strength)
    if r is not None:
        y0, x0, a = r
        multiply(img, y0, x0, a, factor)


def _noise_texture(rng, shape, sigma, scale=4):
    """Return smooth random texture (h, w) with unit-ish amplitude, made at 1/scale size."""
    h, w = shape
    small = rng.standard_normal((h // scale + 2, w // scale + 2)).astype(np.float32)
    small = ndimage.gaussian_filter(small, np.asarray(sigma, float) / scale)
    small /= max(small.std(), 1e-6)
    # nearest-neighbour upsampling: the texture is smooth and faint, blocks do not show
    return np.repeat(np.repeat(small, scale, axis=0), scale, axis=1)[:h, :w]


# ----------------------------------------------------------------------------------
# The face
# ----------------------------------------------------------------------------------

#: Head ellipsoids in head coordinates (IOD units): cranium and the face used for shading.
_CRANIUM = ((0.0, -0.33, -0.78), (0.87, 1.05, 1.0))
_FACE = ((0.0, 0.35, -0.62), (0.86, 1.25, 0.8))


def render(params, size, layout):
    """Return ``(image uint8 (size, size, 3), points (68, 2), visible (68,) bool)`` of one
    synthetic face; ``visible`` is False where hair or an occluder hides a landmark or it
    falls outside the image."""
    app = params.appearance
    rng = np.random.default_rng(params.texture_seed)
    pts = layout.shapes[0]
    p3 = layout.points3d[0]
    px = float(layout.scale[0])  # pixels per IOD unit
    skin = np.asarray(app["skin"], np.float32)
    hair = np.asarray(app["hair"], np.float32)
    light = np.asarray(app["light"], np.float32)
    img = _background(app, size, rng)
    shape = img.shape

    # extra 3-D head geometry, scaled with the face
    width = 0.5 * (p3[16, 0] - p3[0, 0]) / geo._JAW_A
    ccen, cax = np.array(_CRANIUM[0]), np.array(_CRANIUM[1]) * [width, 1.0, 1.0]
    head_outline = _ellipse_outline(layout, ccen, cax)
    hair_ax = cax * app["hair_volume"]
    hair_outline = _ellipse_outline(layout, ccen + [0, -0.04 * (app["hair_volume"] - 1) * 10, 0], hair_ax)
    style = app["hair_style"]

    # long hair behind the head, falling to the shoulders with a rounded, uneven end
    if style == "long":
        length = 1.3 + 0.6 * ((params.texture_seed % 1000) / 1000.0)
        t = np.linspace(-1.0, 1.0, 9)
        ends = np.stack([1.08 * width * np.sign(t) * np.abs(t) ** 0.5,
                         length + 0.12 * np.cos(np.pi * t) - 0.1 * np.abs(t), np.full_like(t, -0.95)], 1)
        curtain = np.concatenate([_proj(layout, ends), hair_outline])
        hull = _convex_hull(curtain)
        r = soft_polygon(hull, shape, sigma=0.8)
        if r is not None:
            y0, x0, a = r
            strands = _noise_texture(rng, a.shape, (0.6, 4.0) if abs(params.roll) < 45 else (4.0, 0.6), scale=2)
            ys = np.arange(y0, y0 + a.shape[0], dtype=np.float32)[:, None]
            fade = 1.0 - 0.35 * np.clip((ys - pts[8, 1]) / (1.2 * px), 0.0, 1.0)
            col = hair[None, None] * ((0.7 + 0.12 * strands) * fade)[..., None]
            blend(img, y0, x0, a, col)

    # a bun: hair gathered at the back of the crown, behind the head
    if style == "bun":
        centre = _proj(layout, [(0.0, -1.2, -1.45)])[0]
        rad = 0.33 * px * app["hair_volume"]
        r = soft_polygon(ellipse_polygon(centre, rad, 0.85 * rad, np.radians(params.roll), n=24), shape, sigma=0.6)
        if r is not None:
            y0, x0, a = r
            strands = _noise_texture(rng, a.shape, (1.5, 1.5), scale=2)
            blend(img, y0, x0, a, hair[None, None] * (0.75 + 0.1 * strands)[..., None])

    # neck and clothes. The body does not turn with the head: only the point where the
    # neck meets it is posed, and the shoulder line keeps a third of the head's roll.
    base = _proj(layout, [(0.0, 1.8, -0.8)])[0]
    ang = np.radians(params.roll) / 3.0
    c, s_ = np.cos(ang), np.sin(ang)
    body = np.array([[c, s_], [-s_, c]])  # rows: the body's right and down directions
    top = _proj(layout, [(-0.5 * width, 0.6, -0.75), (0.5 * width, 0.6, -0.75)])
    neck = np.stack([top[0], base + (np.array([-0.58 * width, 0.9]) * px) @ body,
                     base + (np.array([0.58 * width, 0.9]) * px) @ body, top[1]])
    r = soft_polygon(neck, shape, sigma=0.6)
    if r is not None:
        y0, x0, a = r
        # darker near the jaw: the head shades the top of the neck
        ys = np.arange(y0, y0 + a.shape[0], dtype=np.float32)[:, None]
        chin_y = float(pts[8, 1])
        t = np.clip((ys - chin_y + 0.15 * px) / (0.6 * px), 0.0, 1.0)
        level = 0.45 + 0.25 * app["ambient"] + 0.2 * t
        blend(img, y0, x0, a, skin[None, None] * level[..., None])
    outline = np.array([(-2.6, 0.45), (-1.4, 0.1), (-0.55, -0.01), (0.0, 0.0), (0.55, -0.01), (1.4, 0.1),
                        (2.6, 0.45), (2.8, 2.5), (-2.8, 2.5)]) * px
    outline = outline @ body + base
    clothes = np.asarray(app["clothes"], np.float32)
    r = soft_polygon(catmull_rom(outline, closed=True, per_segment=4), shape, sigma=0.7)
    if r is not None:
        y0, x0, a = r
        # a little shading: darker toward the bottom and on the side away from the light
        xs = (np.arange(x0, x0 + a.shape[1], dtype=np.float32) - base[0]) / (2.6 * px)
        ys = (np.arange(y0, y0 + a.shape[0], dtype=np.float32) - base[1]) / (2.5 * px)
        level = 0.95 + 0.15 * float(light[0]) * xs[None, :] - 0.25 * np.clip(ys[:, None], 0, 1)
        blend(img, y0, x0, a, clothes[None, None] * level[..., None])

    # head: cranium ellipse united with the jaw outline
    jaw = catmull_rom(pts[0:17], per_segment=6)
    temple = _proj(layout, [(p3[16, 0], -0.35, p3[16, 2] - 0.05), (p3[0, 0], -0.35, p3[0, 2] - 0.05)])
    face_poly = np.concatenate([jaw, temple])
    # a turned head can bring the nose or the lips past the cheek's outline: they are skin too
    bumps = []
    for idx in (np.r_[27:36], np.r_[48:60]):
        c = pts[idx].mean(0)
        bumps.append(_convex_hull(c + 1.08 * (pts[idx] - c)))
    y0, x0, (a_head, a_face, a_nose, a_lips) = _joint_alpha(shape, [head_outline, face_poly] + bumps)
    a_face = np.maximum(a_face, np.maximum(a_nose, a_lips))
    hh, ww = a_head.shape
    xs = np.arange(x0, x0 + ww, dtype=np.float32)
    ys = np.arange(y0, y0 + hh, dtype=np.float32)
    n, _ = _normals(layout, _FACE[0], np.array(_FACE[1]) * [width, 1, 1], xs, ys)
    shade = _lambert(n, app)
    tex = 1.0 + 0.015 * _noise_texture(rng, (hh, ww), 2.0 * px / 100 + 1.0, scale=2)
    skin_rgb = skin[None, None] * (shade * tex)[..., None]
    # a soft specular sheen (Blinn-Phong, viewer along +z): oily skin shines more
    half = light + np.array([0.0, 0.0, 1.0], np.float32)
    half /= np.linalg.norm(half)
    sheen = np.float32(app.get("sheen", 0.08)) * np.clip(n @ half, 0.0, 1.0) ** 24
    skin_rgb += (sheen * tex)[..., None] * np.asarray(app["light_colour"], np.float32)
    if app["stubble"] > 0:
        low = _stubble_mask(pts, shape, (hh, ww), y0, x0, px)
        skin_rgb *= 1.0 - app["stubble"] * 0.35 * low[..., None] * (1 - 0.6 * hair[None, None])
    # Back to front: an ear on the side turning away, the cranium, the other ear(s), then
    # the face. The face is drawn last so that its outline - where 300-W puts the jaw
    # points - stays the visible boundary in front of the ears.
    turned = abs(params.yaw) > 8.0
    far = 1.0 if params.yaw > 0 else -1.0  # the side turning away from the camera
    if turned:
        _ears(img, layout, p3, width, skin, app, px, sides=(far,))
    blend(img, y0, x0, a_head, skin_rgb)
    _ears(img, layout, p3, width, skin, app, px, sides=(-far,) if turned else (-1.0, 1.0))
    blend(img, y0, x0, a_face, skin_rgb)
    _face_shading(img, pts, p3, layout, light, px, app)
    _eyes(img, pts, p3, layout, px, app, rng)
    _brows(img, pts, px, app, hair, rng)
    _nose(img, pts, px, light, skin, app, params.yaw)
    _mouth(img, pts, px, app, skin)
    cover = np.zeros(shape[:2], np.float32)  # how much hair or occluders hide each pixel
    if style != "bald":
        _hair_top(img, layout, p3, width, hair_outline, app, hair, px, rng, style, cover)
    if app["occluder"] is not None:
        _occluder(img, pts, px, app, rng, cover)
    image = _finish(img, app, size, rng)
    # a landmark is hidden when hair or an occluder covers its pixel more than halfway
    ij = np.clip(np.round(pts).astype(int), 0, size - 1)
    inside = ((pts >= -0.5) & (pts <= size - 0.5)).all(1)
    visible = inside & (cover[ij[:, 1], ij[:, 0]] < 0.5)
    return image, pts.copy(), visible


def _convex_hull(points):
    """Return the convex hull of 2-D points, counter-clockwise (monotone chain)."""
    p = sorted(map(tuple, np.asarray(points, float)))
    if len(p) < 3:
        return np.asarray(p)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for q in p:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    for q in reversed(p):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    return np.asarray(lower[:-1] + upper[:-1])


def _joint_alpha(shape, polys):
    """Return ``(y0, x0, [alpha, ...])``: each polygon's coverage over their joint bounding box."""
    parts = [polygon_alpha(p, shape) for p in polys]
    found = [p for p in parts if p is not None]
    if not found:
        return 0, 0, [np.zeros((1, 1), np.float32) for _ in polys]
    y0 = min(p[0] for p in found)
    x0 = min(p[1] for p in found)
    y1 = max(p[0] + p[2].shape[0] for p in found)
    x1 = max(p[1] + p[2].shape[1] for p in found)
    out = []
    for p in parts:
        a = np.zeros((y1 - y0, x1 - x0), np.float32)
        if p is not None:
            py, px_, pa = p
            a[py - y0:py - y0 + pa.shape[0], px_ - x0:px_ - x0 + pa.shape[1]] = pa
        out.append(a)
    return y0, x0, out


def _stubble_mask(pts, image_shape, hw, y0, x0, px):
    """Return the (h, w) coverage of the beard area (jaw below the cheeks, round the mouth)
    over the window of the skin at (y0, x0)."""
    poly = np.concatenate([catmull_rom(pts[2:15], per_segment=4), pts[[54, 33, 48]]])
    r = soft_polygon(poly, image_shape, sigma=0.05 * px)
    if r is None:
        return np.zeros(hw, np.float32)
    ry, rx, a = r
    return _sub(a, ry, rx, y0, x0, hw)


def _visible(layout, normal3d):
    """Return the camera-facing component of a head-coordinate direction."""
    return float((layout.rot[0] @ np.asarray(normal3d, float))[2])


def _ears(img, layout, p3, width, skin, app, px, sides=(-1.0, 1.0)):
    for side in sides:
        normal = np.array([side * 0.8, 0.0, 0.6])
        facing = _visible(layout, normal)
        if facing < 0.05:
            continue
        c = np.array([side * (0.8 * width + 0.04), 0.22, -0.72])
        s = app["ear_size"]
        t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        # the ear's plane: vertical, turned 35 degrees forward from the side of the head
        e1 = np.array([side * 0.57, 0.0, 0.82])
        ring = c + s * (0.13 * np.cos(t)[:, None] * e1 + (0.26 * np.sin(t) - 0.03 * np.cos(t) ** 2)[:, None]
                        * np.array([0, 1.0, 0]))
        poly = _proj(layout, ring)
        shade = 0.5 + 0.3 * min(1.0, facing)
        _paint_poly(img, poly, skin * shade * np.array([1.0, 0.92, 0.9], np.float32), sigma=0.5)
        inner = _proj(layout, c + 0.55 * s * (0.1 * np.cos(t)[:, None] * e1
                                              + 0.2 * np.sin(t)[:, None] * np.array([0, 1.0, 0])))
        _shade_poly(img, inner, 0.75, sigma=0.06 * px)


def _face_shading(img, pts, p3, layout, light, px, app):
    # eye sockets: darker under the brow ridge, more so when lit from above
    top_light = max(0.0, -float(light[1]))
    for eye, brow in ((slice(36, 42), slice(17, 22)), (slice(42, 48), slice(22, 27))):
        c = 0.6 * pts[eye].mean(0) + 0.4 * pts[brow].mean(0)
        d = pts[eye][3] - pts[eye][0]
        ang = np.arctan2(d[1], d[0])
        _shade_blob(img, c, 0.2 * px, 0.11 * px, ang, 0.8 - 0.1 * top_light)
    # cheeks: a hint of warmth
    for k in (3, 13):
        c = 0.55 * pts[k] + 0.45 * pts[30]
        r = gaussian_blob(img.shape, c, 0.16 * px, 0.12 * px, 0.0, 0.25)
        if r is not None:
            y0, x0, a = r
            blend(img, y0, x0, a, np.asarray(app["lips"], np.float32))
    # shadow under the chin on the neck and under the lower lip
    d = pts[8] - pts[27]
    d = d / max(np.linalg.norm(d), 1e-6)
    ang = np.arctan2(d[1], d[0]) + np.pi / 2
    _shade_blob(img, pts[57] + d * 0.12 * px, 0.16 * px, 0.05 * px, ang, 0.88)


def _eyes(img, pts, p3, layout, px, app, rng):
    eye_rgb = np.asarray(app["eye"], np.float32)
    gaze = np.asarray(app["gaze"], float)
    for idx, side in ((np.arange(36, 42), -1.0), (np.arange(42, 48), 1.0)):
        e = pts[idx]
        poly = catmull_rom(e, closed=True, per_segment=6)
        r = polygon_alpha(poly, img.shape)
        # upper lid (ring positions 1, 2) to lower lid (5, 4): the same for both eyes
        opening = np.linalg.norm(e[[1, 2]].mean(0) - e[[5, 4]].mean(0))
        if r is not None and opening > 0.6:
            y0, x0, a = r
            hh, ww = a.shape
            # sclera, darker toward the corners and under the upper lid
            ys = np.arange(y0, y0 + hh, dtype=np.float32)[:, None]
            xs = np.arange(x0, x0 + ww, dtype=np.float32)[None, :]
            c = e.mean(0)
            wdt = max(np.linalg.norm(e[3] - e[0]), 1.0)
            radial = np.clip(1.0 - 0.45 * ((xs - c[0]) / (0.5 * wdt)) ** 2, 0.45, 1.0)
            sclera = np.array([0.93, 0.88, 0.86], np.float32)[None, None] * (0.75 * radial)[..., None]
            # iris: a 3-D disc on the eyeball, looking along the gaze
            centre3d = p3[idx].mean(0) + np.array([0.0, -0.005, 0.05])
            gx, gy = gaze
            n = np.array([np.sin(gx), -np.sin(gy), 1.0])
            n /= np.linalg.norm(n)
            e1 = np.cross([0.0, 1.0, 0.0], n)
            e1 /= np.linalg.norm(e1)
            e2 = np.cross(n, e1)
            rad = 0.062 * np.sqrt(np.linalg.norm(p3[idx[3]] - p3[idx[0]]) / 0.275)
            t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
            ring = centre3d + 0.035 * n + rad * (np.cos(t)[:, None] * e1 + np.sin(t)[:, None] * e2)
            iris_poly = _proj(layout, ring)
            ic = iris_poly.mean(0)
            ir = np.sqrt(((xs - ic[0]) ** 2 + (ys - ic[1]) ** 2))
            irad = max(0.5 * (iris_poly.max(0) - iris_poly.min(0)).max(), 1.0)
            iris_a = np.clip(irad - ir + 0.5, 0.0, 1.0)
            # limbal ring and radial texture
            ring_dark = 1.0 - 0.55 * np.clip((ir / irad - 0.7) / 0.3, 0, 1)
            iris_rgb = eye_rgb[None, None] * (ring_dark * (0.9 + 0.2 * rng.random((hh, ww))))[..., None]
            pupil_a = np.clip(0.42 * irad - ir + 0.5, 0.0, 1.0)
            col = sclera * (1 - iris_a[..., None]) + iris_rgb * iris_a[..., None]
            col = col * (1 - pupil_a[..., None]) + np.float32(0.02) * pupil_a[..., None]
            # lid shadow on the top of the eyeball
            top = np.interp(xs[0], e[[0, 1, 2, 3], 0] if side < 0 else e[[3, 2, 1, 0], 0],
                            e[[0, 1, 2, 3], 1] if side < 0 else e[[3, 2, 1, 0], 1])
            lid = np.clip((ys - top[None, :]) / max(0.06 * px, 1.0), 0.0, 1.0)
            col = col * (0.55 + 0.45 * lid)[..., None]
            blend(img, y0, x0, a, col)
            # catch light
            hl = ic + np.array([0.35, -0.35]) * irad
            rr = gaussian_blob(img.shape, hl, 0.2 * irad + 0.3, 0.2 * irad + 0.3, 0.0, 0.9)
            if rr is not None:
                by, bx, ba = rr
                ba = ba * _sub(a, y0, x0, by, bx, ba.shape)
                blend(img, by, bx, ba, np.array([1.0, 1.0, 1.0], np.float32))
        # upper lid: lashes (thick dark line) and the crease above
        upper = e[[0, 1, 2, 3]] if side < 0 else e[[3, 2, 1, 0]]
        ucurve = catmull_rom(upper, per_segment=6)
        k = len(ucurve)
        taper = np.sin(np.linspace(0.15, np.pi - 0.15, k)) ** 0.6
        lash = stroke_polygon(ucurve, 0.028 * px * taper, 0.012 * px * taper + 0.3)
        _paint_poly(img, lash, np.array([0.05, 0.03, 0.03], np.float32), sigma=0.4, opacity=0.9)
        crease = ucurve + np.array([0.0, -0.07 * px]) * taper[:, None]
        _shade_poly(img, stroke_polygon(crease, 0.012 * px * taper, 0.012 * px * taper), 0.75, sigma=0.04 * px)
        lower = e[[3, 4, 5, 0]] if side < 0 else e[[0, 5, 4, 3]]
        lcurve = catmull_rom(lower, per_segment=6)
        lt = np.sin(np.linspace(0.2, np.pi - 0.2, len(lcurve))) ** 0.8
        _shade_poly(img, stroke_polygon(lcurve, 0.008 * px * lt + 0.2, 0.01 * px * lt + 0.2), 0.6, sigma=0.3)


def _sub(alpha, y0, x0, by, bx, shape):
    """Return ``alpha`` (placed at y0, x0) cut to a window at (by, bx) of ``shape`` (zeros outside)."""
    out = np.zeros(shape, np.float32)
    h, w = alpha.shape
    ys0, xs0 = max(by, y0), max(bx, x0)
    ys1, xs1 = min(by + shape[0], y0 + h), min(bx + shape[1], x0 + w)
    if ys1 > ys0 and xs1 > xs0:
        out[ys0 - by:ys1 - by, xs0 - bx:xs1 - bx] = alpha[ys0 - y0:ys1 - y0, xs0 - x0:xs1 - x0]
    return out


def _brows(img, pts, px, app, hair, rng):
    # brows are darker than the skin whatever the hair colour
    skin = np.asarray(app["skin"], np.float32)
    colour = np.minimum(hair * (1.0 - app["brow_darkness"] * 0.5) * 0.8, skin * 0.45)
    for idx in (np.arange(17, 22), np.arange(22, 27)):
        b = pts[idx]
        if idx[0] == 22:
            b = b[::-1]  # outer to inner for both brows: outer end at index 0
        curve = catmull_rom(b, per_segment=5)
        k = len(curve)
        t = np.linspace(0.0, 1.0, k)
        thick = app["brow_thickness"] * px * (0.035 + 0.05 * t ** 0.7)
        # 300-W puts brow points on the upper edge: the hair lies mostly below the curve
        direction = 1.0 if idx[0] == 17 else -1.0
        # left of travel is up for a brow drawn from image-left to image-right
        if direction > 0:
            poly = stroke_polygon(curve, 0.15 * thick, 0.85 * thick)
        else:
            poly = stroke_polygon(curve[::-1], 0.15 * thick[::-1], 0.85 * thick[::-1])
        r = soft_polygon(poly, img.shape, sigma=0.012 * px + 0.3)
        if r is not None:
            y0, x0, a = r
            grain = 0.75 + 0.25 * rng.random(a.shape).astype(np.float32)
            blend(img, y0, x0, a * grain * app["brow_darkness"], colour)


def _nose(img, pts, px, light, skin, app, yaw=0.0):
    # the side of the nose away from the light is in shadow; the tip catches the light
    axis = pts[30] - pts[27]
    length = max(np.linalg.norm(axis), 1.0)
    across = np.array([-axis[1], axis[0]]) / length  # points to image-left when the nose points down
    lx = float(light[0])
    dark_side = 1.0 if lx > 0 else -1.0  # +1: shadow toward image-left
    strength = 0.55 + 0.4 * min(1.0, abs(lx) * 2)
    bridge = catmull_rom(np.stack([pts[27], pts[28], pts[29], pts[30]]), per_segment=4)
    w = 0.055 * px
    side = bridge + dark_side * across * w
    band = stroke_polygon(side, 0.02 * px * np.linspace(0.5, 1.2, len(side)), 0.02 * px * np.linspace(0.5, 1.2,
                                                                                                     len(side)))
    _shade_poly(img, band, 1.0 - 0.35 * strength, sigma=0.05 * px)
    other = bridge - dark_side * across * w
    band2 = stroke_polygon(other, 0.012 * px, 0.012 * px)
    _shade_poly(img, band2, 0.88, sigma=0.04 * px)
    # a turned head shows the nose's outline on the side turning away
    turn = float(np.sin(np.radians(yaw)))
    if abs(turn) > 0.12:
        far = 35 if turn > 0 else 31  # the ala on the far side (image-right when the nose points right)
        edge = np.stack([pts[27], pts[28], pts[29], pts[30] + 0.1 * (pts[30] - pts[29]), pts[far]])
        curve = catmull_rom(edge, per_segment=5)
        k = np.linspace(0.3, 1.0, len(curve))
        offs = np.sign(turn) * across * -1.0  # toward the far side
        curve = curve + offs * (0.012 * px) * k[:, None]
        strength = min(1.0, (abs(turn) - 0.12) * 3.0)
        _shade_poly(img, stroke_polygon(curve, 0.014 * px * k, 0.014 * px * k), 1.0 - 0.4 * strength,
                    sigma=0.02 * px)
    # tip highlight
    hl = pts[30] + np.array([-lx, -0.5]) * 0.03 * px
    r = gaussian_blob(img.shape, hl, 0.05 * px, 0.04 * px, 0.0, 0.25 + 0.2 * (1 - app["ambient"]))
    if r is not None:
        y0, x0, a = r
        blend(img, y0, x0, a, np.minimum(skin * 1.3 + 0.1, 1.0))
    # alae: the creases round the nostril wings
    for k_out, k_in, sgn in ((31, 32, 1.0), (35, 34, -1.0)):
        p_out, p_in = pts[k_out], pts[k_in]
        up = pts[29] - pts[33]
        wing = np.stack([p_in + 0.3 * (p_out - p_in) + 0.05 * up,
                         p_out + 0.15 * (p_out - p_in),
                         p_out + 0.45 * up - 0.1 * (p_out - p_in),
                         p_out + 0.8 * up + 0.3 * (p_in - p_out)])
        curve = catmull_rom(wing, per_segment=5)
        _shade_poly(img, stroke_polygon(curve, 0.012 * px, 0.012 * px), 0.72, sigma=0.025 * px)
        # nostril opening: between the wing point and the columella, just above the base line
        c = 0.45 * pts[k_out] + 0.35 * pts[k_in] + 0.2 * pts[33] + 0.03 * up
        d = pts[33] - pts[k_out]
        ang = np.arctan2(d[1], d[0])
        rx = 0.3 * np.linalg.norm(d)
        ry = max(0.025 * px, 0.5)
        _paint_poly(img, ellipse_polygon(c, rx, ry, ang, n=16), skin * 0.25, sigma=0.025 * px, opacity=0.85)
    # shadow under the nose
    under = pts[33] + 0.25 * (pts[51] - pts[33])
    _shade_blob(img, under, 0.12 * px, 0.04 * px, np.arctan2(*(pts[35] - pts[31])[::-1]), 0.85)


def _mouth(img, pts, px, app, skin):
    lips = np.asarray(app["lips"], np.float32)
    outer = catmull_rom(pts[48:60], closed=True, per_segment=6)
    inner = catmull_rom(pts[60:68], closed=True, per_segment=6)
    r = soft_polygon(outer, img.shape, sigma=0.012 * px + 0.2)
    if r is None:
        return
    y0, x0, a = r
    hh, ww = a.shape
    ys = np.arange(y0, y0 + hh, dtype=np.float32)[:, None]
    # upper lip darker than the lower (it faces down, away from most light)
    mid = np.interp(np.arange(x0, x0 + ww), *_sorted_xy(pts[60:65]))
    upper = np.clip((mid[None, :] - ys) / max(0.01 * px, 0.5), 0.0, 1.0)
    col = lips[None, None] * (1.0 - 0.18 * upper)[..., None]
    blend(img, y0, x0, a * 0.9, col)
    # lower-lip highlight
    c = 0.5 * (pts[57] + pts[66])
    rb = gaussian_blob(img.shape, c + np.array([0, -0.1]) * px * 0.1, 0.07 * px, 0.022 * px, 0.0, 0.3)
    if rb is not None:
        by, bx, ba = rb
        blend(img, by, bx, ba, np.minimum(lips * 1.35 + 0.08, 1.0))
    # the mouth opening: dark inside, teeth along the upper lip when open enough
    gap = np.linalg.norm(pts[66] - pts[62])
    ri = soft_polygon(inner, img.shape, sigma=0.3)
    if ri is not None and gap > 0.8:
        iy, ix, ia = ri
        hh, ww = ia.shape
        ys = np.arange(iy, iy + hh, dtype=np.float32)[:, None]
        top = np.interp(np.arange(ix, ix + ww), *_sorted_xy(pts[60:65]))
        teeth_h = min(0.07 * px, 0.45 * gap)
        teeth = np.clip((top[None, :] + teeth_h - ys) / 1.0, 0.0, 1.0)
        xs = np.arange(ix, ix + ww, dtype=np.float32)[None, :]
        mc = 0.5 * (pts[60, 0] + pts[64, 0])
        halfw = max(0.5 * abs(pts[64, 0] - pts[60, 0]), 1.0)
        teeth *= np.clip(1.0 - np.abs(xs - mc) / (0.85 * halfw), 0.0, 1.0) ** 0.3
        dark = np.array([0.12, 0.03, 0.04], np.float32)
        tcol = np.array([0.88, 0.85, 0.78], np.float32)
        col = dark[None, None] * (1 - teeth[..., None]) + tcol[None, None] * teeth[..., None] * 0.9
        blend(img, iy, ix, ia, col)
    # the lip line (always: when closed it is all that shows of the inner lips)
    line = catmull_rom(pts[60:65], per_segment=6)
    _shade_poly(img, stroke_polygon(line, 0.008 * px + 0.3, 0.008 * px + 0.3), 0.45, sigma=0.3)


def _sorted_xy(p):
    o = np.argsort(p[:, 0])
    return p[o, 0], p[o, 1]


def _cover(cover, r, weight=1.0):
    """Record in ``cover`` that the drawn coverage ``r = (y0, x0, alpha)`` hides pixels."""
    if r is None or cover is None:
        return
    y0, x0, a = r
    sub = cover[y0:y0 + a.shape[0], x0:x0 + a.shape[1]]
    np.maximum(sub, a * weight, out=sub)


def _hair_top(img, layout, p3, width, hair_outline, app, hair, px, rng, style, cover=None):
    """Hair over the top of the head: the hair ellipse minus the face below a hairline."""
    pts = layout.shapes[0]
    hl = app["hairline"]
    if style == "fringe":
        hl = float(np.min(p3[17:27, 1])) - 0.06 - 0.1 * (app["hairline"] + 0.87) / 0.25
    # hairline: a curve over the forehead from temple to temple, on the cranium's front
    xs = np.linspace(-1.0, 1.0, 15)
    c, ax = np.array(_CRANIUM[0]), np.array(_CRANIUM[1]) * [width, 1, 1]
    wavy = 0.04 * np.cos(9 * xs) if style == "fringe" else 0.0
    # the hairline never reaches the brows (hidden brows would be the exception in 300-W)
    yline = np.minimum(hl + 0.25 * np.abs(xs) ** 2.5 + wavy, float(np.min(p3[17:27, 1])) - 0.07)
    xw = xs * 0.8 * width
    zz = c[2] + ax[2] * np.sqrt(np.clip(1 - (xw / ax[0]) ** 2 - ((yline - c[1]) / ax[1]) ** 2, 0.02, 1))
    front = _proj(layout, np.stack([xw, yline, zz + 0.02], 1))
    # the face below the hairline stays free of hair: the hairline, then down the face
    # outline (the jaw points, pushed out a little) and back up, so the jaw points keep
    # the hair/skin boundary that 300-W annotators follow
    centre = pts[27:36].mean(0)
    out = pts[16::-1] - centre
    out = pts[16::-1] + 0.035 * px * out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
    face = np.concatenate([front, out])
    r_hair = soft_polygon(hair_outline, img.shape, sigma=0.4)
    if r_hair is None:
        return
    y0, x0, a = r_hair
    # ... and so do the brows and eyes, which a turned head can bring past that outline
    features = pts[17:48]
    fc = features.mean(0)
    spread = features - fc
    features = features + 0.06 * px * spread / np.maximum(np.linalg.norm(spread, axis=1, keepdims=True), 1e-6)
    for poly in (face, _convex_hull(features)):
        r_free = polygon_alpha(poly, img.shape)
        if r_free is not None:
            a = a * (1.0 - _sub(r_free[2], r_free[0], r_free[1], y0, x0, a.shape))
    hh, ww = a.shape
    xs_ = np.arange(x0, x0 + ww, dtype=np.float32)
    ys_ = np.arange(y0, y0 + hh, dtype=np.float32)
    n, _ = _normals(layout, c, ax * app["hair_volume"], xs_, ys_)
    shade = _lambert(n, app)
    strands = _noise_texture(rng, (hh, ww), (3.0, 0.6), scale=2)
    col = hair[None, None] * (shade * (1.0 + 0.18 * strands))[..., None]
    spec = np.clip(n @ np.asarray(app["light"], np.float32), 0, 1) ** 12 * 0.2
    col = col + spec[..., None]
    # a soft, slightly uneven hairline rather than a cut edge
    a = np.clip(a * (1.0 + 0.25 * strands), 0.0, 1.0)
    blend(img, y0, x0, a, col)
    _cover(cover, (y0, x0, a))


def _occluder(img, pts, px, app, rng, cover=None):
    occ = app["occluder"]
    lo, hi = pts.min(0), pts.max(0)
    centre = lo + np.array([occ["u"], occ["v"]]) * (hi - lo)
    size = (0.25 + 0.45 * occ["size"]) * px
    kind = occ["kind"]
    ang = (occ["angle"] - 0.5) * np.pi
    if kind == "patch":
        bg = _background_image(_BG_NAMES[int(occ["colour"] * len(_BG_NAMES)) % len(_BG_NAMES)])
        poly = ellipse_polygon(centre, size, size * 0.7, ang, n=16) if occ["size"] > 0.5 else \
            np.array([[-1, -0.7], [1, -0.7], [1, 0.7], [-1, 0.7]]) @ np.array(
                [[np.cos(ang), np.sin(ang)], [-np.sin(ang), np.cos(ang)]]) * size + centre
        r = soft_polygon(poly, img.shape, sigma=0.5)
        if r is None:
            return
        y0, x0, a = r
        hh, ww = a.shape
        sx = rng.uniform(0, bg.shape[1] - ww - 1) if bg.shape[1] > ww + 1 else 0
        sy = rng.uniform(0, bg.shape[0] - hh - 1) if bg.shape[0] > hh + 1 else 0
        tex = bilinear(bg, np.arange(ww)[None, :] + sx + 0 * np.arange(hh)[:, None],
                       np.arange(hh)[:, None] + sy + 0 * np.arange(ww)[None, :])
        blend(img, y0, x0, a, tex * rng.uniform(0.6, 1.2))
        _cover(cover, r)
    elif kind == "hand":
        skin = np.asarray(app["skin"], np.float32) * (0.8 + 0.3 * occ["colour"])
        poly = ellipse_polygon(centre, size * 1.1, size * 0.6, ang, n=20)
        _cover(cover, _paint_poly(img, poly, skin, sigma=0.6))
        # fingers: a few bands across the palm
        d = np.array([np.cos(ang), np.sin(ang)])
        nrm = np.array([-d[1], d[0]])
        for k in range(-1, 3):
            a0 = centre + nrm * (k * 0.3 * size) - d * size * 0.2
            finger = np.stack([a0, a0 + d * size * 1.6])
            _cover(cover, _paint_poly(img, stroke_polygon(finger, [0.14 * size] * 2, [0.14 * size] * 2),
                                      skin * 0.95, 0.6))
            _shade_poly(img, stroke_polygon(finger + nrm * 0.15 * size, [0.02 * size] * 2, [0.02 * size] * 2),
                        0.7, 0.5)
    elif kind == "bar":
        d = np.array([np.cos(ang), np.sin(ang)])
        ends = np.stack([centre - d * 3 * size, centre + d * 3 * size])
        colour = np.full(3, 0.1 + 0.8 * occ["colour"], np.float32) * np.array([1.0, 0.9, 0.8], np.float32)
        _cover(cover, _paint_poly(img, stroke_polygon(ends, [0.15 * size] * 2, [0.15 * size] * 2), colour, 0.5))
    else:  # glasses: dark lenses over both eyes
        frame = np.array([0.05, 0.05, 0.05], np.float32)
        tint = 0.15 + 0.7 * occ["colour"]
        for eye in (slice(36, 42), slice(42, 48)):
            e = pts[eye]
            c = e.mean(0)
            w = np.linalg.norm(e[3] - e[0])
            d = e[3] - e[0]
            angle = np.arctan2(d[1], d[0])
            poly = ellipse_polygon(c + np.array([0, 0.01 * px]), 0.75 * w, 0.5 * w, angle, n=24)
            r = soft_polygon(poly, img.shape, sigma=0.5)
            if r is not None:
                y0, x0, a = r
                multiply(img, y0, x0, a, tint)
                _cover(cover, r, weight=1.0 - tint)  # dark lenses hide the eyes, light ones do not
            ring = np.concatenate([poly, poly[:1]])
            _paint_poly(img, stroke_polygon(ring, [0.012 * px] * len(ring), [0.012 * px] * len(ring)), frame, 0.3)
        bridge = np.stack([pts[39] + np.array([0.2 * np.linalg.norm(pts[39] - pts[36]), -0.03 * px]),
                           pts[42] - np.array([0.2 * np.linalg.norm(pts[45] - pts[42]), 0.03 * px])])
        _paint_poly(img, stroke_polygon(bridge, [0.012 * px] * 2, [0.012 * px] * 2), frame, 0.3)


def _finish(img, app, size, rng):
    """Global light colour, contrast, gamma, blur and sensor noise; return uint8."""
    contrast = np.float32(app["contrast"])
    img *= np.asarray(app["light_colour"], np.float32) * np.float32(app["brightness"] * 255.0)
    if app["grey"]:
        g = img @ LUMA
        img = np.repeat(g[..., None], 3, axis=2)
    # contrast about the mean, in place (the image is in 0..255 from here on)
    mean = np.float32(img.mean())
    img *= contrast
    img += mean * (np.float32(1.0) - contrast)
    sigma = app["blur"] * size / 256
    if sigma > 0.3:
        img = ndimage.gaussian_filter(img, (sigma, sigma, 0), truncate=2.5)
    if app["noise"] > 0:
        # luminance noise (one field for the three channels): a third of the cost of colour noise
        img += rng.standard_normal(img.shape[:2], dtype=np.float32)[..., None] * np.float32(app["noise"] * 255.0)
    img += np.float32(0.5)
    np.clip(img, 0.0, 255.0, out=img)
    out = img.astype(np.uint8)
    # gamma through a lookup table on the quantised image: one gather instead of a power
    lut = (np.linspace(0.0, 1.0, 256) ** app["gamma"] * 255.0 + 0.5).astype(np.uint8)
    return lut[out]
