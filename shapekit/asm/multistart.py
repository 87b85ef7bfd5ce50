"""The search of an active shape model from its starts: every start of every face box (or
a given start shape), each fit scored by its quality, the kept fit chosen over boxes and
rescued when poor (see :class:`~shapekit.asm.ActiveShapeModel`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from shapekit._progress import progress
from shapekit.asm.pyramid import SearchFrame, build_pyramid, to_level
from shapekit.asm.search import search_pyramid
from shapekit.asm.shape_fit import apply_similarity, fit_shape, fit_similarity
from shapekit.asm.template import ncc_scores
from shapekit.data.images import load_image
from shapekit.errors import ShapekitError

__all__ = ["MultiStartSearch"]


class MultiStartSearch:
    """The search methods of :class:`~shapekit.asm.ActiveShapeModel` (a base class of it):
    the fit quality, the search from every start, the choice among boxes and the rescue."""

    def fit_quality(self, pyramid, points):
        """Return how badly the shape ``points`` (L, 2, level-0 pixels of ``pyramid``) fits
        the image; lower is better, and :meth:`search` keeps the start with the lowest value.

        The profile term is the mean over landmarks of the Mahalanobis cost of the profile
        under the landmark's model minus its cost under the background model (profiles at
        random points and directions around and away from the training faces): a log
        likelihood ratio, so that smooth or flat regions, which every profile model finds
        cheap, do not look like a good fit. It is divided by the profile length and
        averaged over the finest ``quality_levels`` levels (None: all).
        ``quality_background=False`` drops the background term. Plus
        ``quality_shape_weight`` times the mean of ``b_i² / λ_i`` (how unusual the shape
        is), minus ``quality_template_weight`` times :meth:`template_match`.
        """
        profiles, pdm = self.profiles_, self.pdm_
        k = profiles.k
        n_q = len(pyramid) if self.quality_levels is None else int(self.quality_levels)
        levels = range(max(1, min(n_q, len(pyramid))))
        quality = 0.0
        for level in levels:
            costs = profiles.costs(pyramid[level], to_level(points, level), level, background=self.quality_background)
            quality += float(np.mean(costs)) / (2 * k + 1) / len(levels)
        if self.quality_shape_weight:
            var = pdm.explained_variance_
            b = fit_shape(points, pdm.mean_, pdm.components_, var, self.clip, mode=self.mode)[1]
            quality += float(self.quality_shape_weight) * float(np.mean(b * b / var))
        if self.quality_template_weight:
            quality -= float(self.quality_template_weight) * self.template_match(pyramid, points)
        return quality

    def template_match(self, pyramid, points):
        """Return the normalised cross-correlation in [-1, 1] between the model's mean
        inner-face appearance and the image, placed by the similarity that best maps the
        mean shape onto ``points`` (L, 2, level-0 pixels of ``pyramid``)."""
        level = self._template_level()
        pose = fit_similarity(self.pdm_.mean_, to_level(points, level))
        return float(ncc_scores(pyramid[level], self.template_grid_, self.template_, pose[None])[0])

    def search(self, image, box=None, start=None, return_info=False, box_kind="landmarks", kernels="numba",
               boxes=None):
        """Return the landmarks (L, 2) found in ``image``, in its pixels (0-based centres).

        Starts from ``start`` (a shape (L, 2) in image pixels) when given, else from the
        face ``box`` (x0, y0, x1, y1) pixels of ``box_kind`` (see :meth:`start_from_box`),
        else from each of the candidate face ``boxes`` (B, 4+), else from the detector's
        best ``max_boxes`` faces (:func:`~shapekit.data.detect.detect_boxes`; placed with the ``detector``
        start when the model learned one, else as landmark boxes). From a box the search
        runs once per start of :meth:`box_starts` (start shapes × scales) and keeps the
        fit with the lowest :meth:`fit_quality`. With ``return_info`` also returns a
        :class:`~shapekit.asm.search.SearchInfo` of the kept fit (``quality``, the
        ``box_index`` and ``start_index`` it came from, ``n_starts`` tried).
        ``kernels="numpy"`` matches profiles with the NumPy reference (for comparison).
        """
        self._check_fitted()
        image = load_image(image, convert=False)
        config = self.detector_start
        accept = getattr(self, "accept_quality_", None) if config.box_accept is not None else None
        results, box_list, box_kind = self._search_starts(image, box=box, start=start, box_kind=box_kind, boxes=boxes,
                                                          kernels=kernels, accept=accept)
        if accept is None:
            best = min(results, key=lambda r: r[1].quality)
        else:
            # the first box (in the given order) whose fit is good enough, else the first box
            per_box = {}
            for r in results:
                i = r[1].box_index
                if i not in per_box or r[1].quality < per_box[i][1].quality:
                    per_box[i] = r
            good = [i for i in sorted(per_box) if per_box[i][1].quality <= accept]
            best = per_box[good[0] if good else min(per_box)]
        n_starts = len(results)
        level = getattr(self, "rescue_quality_", None) if config.rescue_quantile is not None else None
        rescued = level is not None and box_list is not None and best[1].quality > level
        if rescued:
            # a poor fit: search again from the kept box's start shapes moved (scale,
            # rotation, shift) and keep the best quality of all
            i = best[1].box_index
            extra = self._search_groups(image, self.rescue_starts(box_list[i], kind=box_kind), kernels)
            for j, r in enumerate(extra):
                r[1].box_index, r[1].rescue_index, r[1].box = i, j, np.asarray(box_list[i], float)[:4]
            n_starts += len(extra)
            best = min([best] + extra, key=lambda r: r[1].quality)
        best[1].n_starts, best[1].rescued = n_starts, rescued
        return (best[0], best[1]) if return_info else best[0]

    def _search_groups(self, image, groups, kernels="numba"):
        """Return ``[(points, info), ...]``: the fit from every start of every group of
        start shapes (image pixels), one search frame per group; ``start_index`` counts
        over all groups."""
        results = []
        for group in groups:
            frame = SearchFrame.around(group[0], self.face_size, self.margin)
            pyr = build_pyramid(frame.sample(image), self.n_levels)
            for shape in group:
                pts, info = self._search_frame(pyr, frame.to_frame(shape), kernels)
                info.quality = self.fit_quality(pyr, pts)
                info.start_index = len(results)
                results.append((frame.to_image(pts), info))
        return results

    def _search_starts(self, image, box=None, start=None, box_kind="landmarks", boxes=None, kernels="numba",
                       accept=None):
        """Return ``([(points, info), ...], boxes, box_kind)``: the fit from every start
        (image pixels), the boxes searched (None from a start shape) and their kind; with
        ``accept``, boxes after the first whose best fit has quality <= accept are skipped."""
        if start is not None:
            start = np.asarray(start, dtype=np.float64)
            if start.shape != self.pdm_.mean_.shape:
                raise ShapekitError(f"start: expected a shape {self.pdm_.mean_.shape}, got {start.shape}")
            if not np.all(np.isfinite(start)):
                raise ShapekitError("start: the start shape has missing points")
            groups = [start[None]]
            box_list = None
        else:
            if box is not None:
                box_list = [box]
            elif boxes is not None:
                box_list = np.asarray(boxes, dtype=np.float64)
                if box_list.ndim != 2 or box_list.shape[1] < 4 or len(box_list) == 0:
                    raise ShapekitError(f"boxes: expected (B, 4+) face boxes, got shape {box_list.shape}")
            else:
                # several detector boxes only with a learned acceptance level (or when the
                # best fit over all boxes is asked for): see box_accept
                learned = self.detector_start.box_accept is None or hasattr(self, "accept_quality_")
                n_search = self._n_boxes() if learned else 1
                box_list, box_kind = self._detector_boxes(image, max(n_search, self._n_verify()))
                if box_list.shape[1] >= 5:
                    box_list = self.rank_boxes(image, box_list)
                box_list = box_list[:n_search]
            groups = [self.box_starts(b, kind=box_kind) for b in box_list]
        results = []
        for box_index, group in enumerate(groups):
            # one frame and pyramid per box: its starts differ by shape and +-scale only
            frame = SearchFrame.around(group[0], self.face_size, self.margin)
            pyr = build_pyramid(frame.sample(image), self.n_levels)
            for start_index, shape in enumerate(group):
                pts, info = self._search_frame(pyr, frame.to_frame(shape), kernels)
                info.quality = self.fit_quality(pyr, pts)
                info.box_index, info.start_index = box_index, start_index
                if box_list is not None:
                    info.box = np.asarray(box_list[box_index], dtype=np.float64)[:4]
                results.append((frame.to_image(pts), info))
            if accept is not None and min(r[1].quality for r in results if r[1].box_index == box_index) <= accept:
                break
        return results, box_list, box_kind

    def _search_frame(self, pyr, shape, kernels="numba"):
        """Return ``(points, info)``: the search from ``shape`` in the frame's pixels."""
        config = replace(self.search_config, kernels=kernels)
        starts = self.start_config
        if starts.refine_start:
            shape = self._refine(pyr, shape)
        top = self.n_levels - 1
        if not len(starts.starts):
            return search_pyramid(pyr, self, shape, config)
        pdm = self.pdm_
        _, b, pose = fit_shape(shape, pdm.mean_, pdm.components_, pdm.explained_variance_, config.clip,
                               mode=config.mode)
        candidates = [shape]
        for mode_index, sd in starts.starts:
            bb = b.copy()
            if mode_index < len(bb):
                bb[mode_index] += sd * np.sqrt(pdm.explained_variance_[mode_index])
                candidates.append(apply_similarity(pose, pdm.inverse_transform(bb)))
        coarse = [search_pyramid(pyr, self, c, replace(config, levels=(top,))) for c in candidates]
        shape, first = min(coarse, key=lambda r: r[1].cost)
        if top == 0:
            return shape, first
        pts, info = search_pyramid(pyr, self, shape, replace(config, levels=tuple(range(top - 1, -1, -1))))
        info.iterations.insert(0, first.iterations[0])
        info.converged.insert(0, first.converged[0])
        return pts, info

    def predict(self, images, boxes=None, starts=None, progress_bar=None):
        """Return the landmarks ``(N, L, 2)`` of each image (see :meth:`search`)."""
        self._check_fitted()
        n = len(images)
        out = np.empty((n, *self.pdm_.mean_.shape))
        for i in progress(range(n), desc="ASM search", disable=None if progress_bar is None else not progress_bar):
            box = None if boxes is None else boxes[i]
            start = None if starts is None else starts[i]
            out[i] = self.search(images[i], box=box, start=start)
        return out
