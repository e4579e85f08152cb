"""The MTCNN cascade (PNet -> RNet -> ONet) in PyTorch, batched across pyramid levels and images.

It follows what the original ``mtcnn`` 1.0.0 package does, step by step, so that its detections
can be reproduced closely (see ``docs/faces.md`` and ``bench/bench_faces.py``):

- pyramid: ``round(log(min_side / 12) / log(1 / 0.709) - 1)`` levels at scales
  ``12 / min_face_size * 0.709 ** k``; level size ``floor(side * scale)``; resampling is
  TensorFlow's ``ResizeMethod.AREA`` (exact box-filter area averaging, reproduced here with
  separable banded weights), applied to the normalised image ``(rgb - 127.5) / 128``.
- PNet proposals: cell ``(x, y)`` of a level gives the box ``(2x + 1, 2y + 1, 2x + 12, 2y + 12)``
  moved by its regression times 11, divided by the level's nominal scale; kept when p(face) > 0.6.
  NMS (IoU union > 0.5) per level, then (IoU union > 0.7) across levels, then squared.
- RNet / ONet patches: TensorFlow's ``crop_and_resize`` (bilinear, corners aligned on
  ``box / size * (size - 1)``, samples outside the image are 0) of the float boxes, 24 / 48 px.
  Box regression scaled by ``(x2 - x1 + 1, y2 - y1 + 1)``; RNet keeps p > 0.7, NMS union 0.7,
  squares; ONet landmarks ``w * l + x1 - 1``, keeps p > 0.8, NMS by IoU-over-minimum > 0.7.
- The package's NMS is not greedy NMS: a box is dropped when ANY higher-scoring box overlaps it
  above the threshold, even one that was itself dropped. ``nms="reference"`` (the default)
  reproduces that with a (chunked) IoU matrix per group; ``nms="greedy"`` uses
  ``torchvision.ops.batched_nms`` for the union-IoU stages instead (the last stage's
  IoU-over-minimum NMS has no torchvision counterpart and always uses the package's rule).
  torchvision is imported only for ``nms="greedy"``: its import pulls in ``torch._dynamo``.
- Boxes are finally clipped to ``[0, W-1] x [0, H-1]`` (landmarks are not clipped).

All pyramid levels of all images of a call are packed into one "mosaic" tensor and PNet runs once
on it (cells whose receptive field would straddle two levels are masked, so every level gives
exactly what it gives alone); RNet and ONet run on all boxes of all images at once.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Sequence

import numpy as np
import torch

from .boxes import ImageStore, nms_indices, regress_boxes, square_boxes
from .nets import load_nets
from .pyramid import AreaResizer, MosaicRect, area_resize, pack_mosaic, pyramid_scales, to_rgb_array
from .types import KEYPOINT_NAMES, Face

logger = logging.getLogger(__name__)

PNET_CELL = 12
PNET_STRIDE = 2
# Canvas pixels per PNet strip: conv1's output stays under ~16 MB, below glibc's largest mmap
# threshold (see _CHUNK_FLOATS in modeling.faces.pyramid).
PNET_STRIP_PIXELS = 400_000


# --------------------------------------------------------------------------- the detector
class FaceDetector:
    """MTCNN with the ``mtcnn`` package's weights, in PyTorch. Thread-safe; create once, reuse.

    ``device``: anything ``torch.device`` accepts (default: CPU). ``nms``: ``"reference"``
    (reproduces the ``mtcnn`` package) or ``"greedy"``. ``max_image_pixels``: larger images are
    area-downscaled before detection (results are mapped back); ``max_batch_pixels`` bounds the
    mosaic PNet runs on at once. ``num_threads``: torch intra-op threads used during a call on CPU
    (default 1, or the ``APPAREAL_FACE_THREADS`` environment variable; ``None`` leaves torch's
    setting alone). One thread is the right choice in a web worker and on a shared machine (several
    threads spin and wait for each other when the CPU is busy); the previous setting is restored
    after each call, nothing is changed at import.
    """

    def __init__(self, device=None, *, scale_factor: float = 0.709,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
                 nms: str = "reference", max_image_pixels: int = 8_000_000,
                 max_batch_pixels: int | None = None, patch_batch: int = 1024,
                 num_threads: int | None = -1):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if num_threads == -1:  # default: env APPAREAL_FACE_THREADS, else 1 on CPU
            env = os.environ.get("APPAREAL_FACE_THREADS", "").strip()
            num_threads = int(env) if env else (1 if self.device.type == "cpu" else None)
        self.num_threads = num_threads if num_threads and num_threads > 0 else None
        self.scale_factor = scale_factor
        self.thresholds = thresholds
        if nms not in ("reference", "greedy"):
            raise ValueError("nms must be 'reference' or 'greedy'")
        self.nms_mode = nms
        self.max_image_pixels = max_image_pixels
        if max_batch_pixels is None:
            max_batch_pixels = 2_000_000 if self.device.type == "cpu" else 40_000_000
        self.max_batch_pixels = max_batch_pixels
        self.patch_batch = patch_batch
        pnet, rnet, onet = load_nets()
        # channels-last convolutions are markedly faster for these thin layers (oneDNN): measured
        # 2.4x for RNet/ONet batches on the shared 2-core box
        self.pnet = pnet.to(self.device).to(memory_format=torch.channels_last)
        self.rnet = rnet.to(self.device).to(memory_format=torch.channels_last)
        self.onet = onet.to(self.device).to(memory_format=torch.channels_last)

    # ----------------------------------------------------------------- public
    def detect(self, image, *, min_face_size: int = 20, try_rotations: bool = False) -> list[Face]:
        return self.detect_batch([image], min_face_size=min_face_size, try_rotations=try_rotations)[0]

    def detect_batch(self, images: Sequence, *, min_face_size: int = 20,
                     try_rotations: bool = False) -> list[list[Face]]:
        images = list(images)
        if not images:
            return []
        arrays = []
        for im in images:
            try:
                arrays.append(to_rgb_array(im))
            except Exception:  # unreadable: treat as "no face"
                arrays.append(np.zeros((0, 0, 3), dtype=np.uint8))
        results = self._detect_arrays(arrays, min_face_size)
        if try_rotations:
            todo = [i for i, r in enumerate(results) if not r and min(arrays[i].shape[:2]) > 0]
            if todo:
                rot_arrays, meta = [], []
                for i in todo:
                    for k in (1, 2, 3):  # 90, 180, 270 degrees counter-clockwise
                        rot_arrays.append(np.ascontiguousarray(np.rot90(arrays[i], k)))
                        meta.append((i, k))
                rot_results = self._detect_arrays(rot_arrays, min_face_size)
                best: dict[int, tuple[float, int, list[Face]]] = {}
                for (i, k), faces in zip(meta, rot_results):
                    if faces and (i not in best or faces[0].confidence > best[i][0]):
                        best[i] = (faces[0].confidence, k, faces)
                for i, (_, k, faces) in best.items():
                    h, w = arrays[i].shape[:2]
                    results[i] = [_unrotate(f, k, w, h) for f in faces]
        return results

    # ----------------------------------------------------------------- internals
    def _detect_arrays(self, arrays: list[np.ndarray], min_face_size: int) -> list[list[Face]]:
        n = self.num_threads if self.device.type == "cpu" else None
        prev = torch.get_num_threads()
        if n is not None and prev != n:
            torch.set_num_threads(n)
        try:
            return self._detect_arrays_inner(arrays, min_face_size)
        except (RuntimeError, MemoryError, ValueError, IndexError):
            # "no face" rather than a crash in a web request (e.g. out of memory on a giant image);
            # logged with its traceback so that a real bug does not go unnoticed
            logger.exception("face detection failed on %d image(s); reporting no faces", len(arrays))
            return [[] for _ in arrays]
        finally:
            if n is not None and prev != n:
                torch.set_num_threads(prev)

    @torch.inference_mode()
    def _detect_arrays_inner(self, arrays: list[np.ndarray], min_face_size: int) -> list[list[Face]]:
        n_img = len(arrays)
        results: list[list[Face]] = [[] for _ in range(n_img)]
        tensors: list[torch.Tensor | None] = []
        factors: list[float] = []
        for a in arrays:
            h, w = a.shape[:2]
            if h < 12 or w < 12:
                tensors.append(None)
                factors.append(1.0)
                continue
            # (H, W, 3) float32, normalised in place: one image-sized buffer
            t = torch.from_numpy(a.copy() if not a.flags.writeable else a).to(self.device, torch.float32)
            t = t.sub_(127.5).div_(128.0)
            f = 1.0
            if h * w > self.max_image_pixels:
                f = math.sqrt(self.max_image_pixels / (h * w))
                t = area_resize(t, max(1, int(h * f)), max(1, int(w * f)))
            tensors.append(t)
            factors.append(f)
        live = [i for i, t in enumerate(tensors) if t is not None]
        if not live:
            return results
        imgs = [tensors[i] for i in live]
        dets = self._cascade(imgs, min_face_size)
        if dets is None:
            return results
        img_ids, boxes, scores, lms = dets
        img_ids = img_ids.cpu().numpy()
        boxes = boxes.cpu().numpy()
        scores = scores.cpu().numpy()
        lms = lms.cpu().numpy()
        for j, i in enumerate(live):
            sel = np.nonzero(img_ids == j)[0]
            if sel.size == 0:
                continue
            f = factors[i]
            H, W = imgs[j].shape[0], imgs[j].shape[1]
            b = boxes[sel].copy()
            b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, W - 1)
            b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, H - 1)
            b = b / f
            lm = lms[sel] / f
            sc = scores[sel]
            order = np.argsort(-sc, kind="stable")
            faces = []
            for o in order:  # building the result objects (not the hot path)
                x1, y1, x2, y2 = (float(v) for v in b[o])
                faces.append(Face(
                    box=(x1, y1, x2 - x1, y2 - y1),
                    confidence=float(sc[o]),
                    keypoints={name: (float(lm[o, q]), float(lm[o, 5 + q]))
                               for q, name in enumerate(KEYPOINT_NAMES)},
                ))
            results[i] = faces
        return results

    def _cascade(self, imgs: list[torch.Tensor], min_face_size: int):
        dev = self.device
        t1, t2, t3 = self.thresholds
        # ---------------- stage 1: PNet on a mosaic of all pyramid levels of all images
        rects: list[MosaicRect] = []
        for j, im in enumerate(imgs):
            H, W = im.shape[0], im.shape[1]
            for s in pyramid_scales(H, W, min_face_size, self.scale_factor):
                hw = (np.asarray([H, W]) * s).astype(np.int64)
                h, w = int(hw[0]), int(hw[1])
                if h >= 12 and w >= 12:
                    rects.append(MosaicRect(image=j, scale=float(s), h=h, w=w))
        if not rects:
            return None
        canvases = pack_mosaic(rects, self.max_batch_pixels)
        cand_boxes, cand_scores, cand_img, cand_level = [], [], [], []
        resizers: dict[int, AreaResizer] = {}
        for ci, (CH, CW) in enumerate(canvases):
            mine = [(ri, r) for ri, r in enumerate(rects) if r.canvas == ci]
            ho, wo = (CH - 2) // 2 - 4, (CW - 2) // 2 - 4
            if ho <= 0 or wo <= 0:
                continue
            # NHWC memory (channels-last), even sizes so that 2x2 pooling needs no ceil mode
            canvas_hwc = torch.zeros((CH, CW, 3), dtype=torch.float32, device=dev)
            owner = torch.full((ho, wo), -1, dtype=torch.long, device=dev)
            for ri, r in mine:  # loop over pyramid levels (tens), not boxes
                if r.image not in resizers:  # rects come image by image
                    resizers = {r.image: AreaResizer(imgs[r.image])}
                resizers[r.image].resize_into(canvas_hwc[r.y:r.y + r.h, r.x:r.x + r.w])
                ph, pw = (r.h - 1) // 2 - 4, (r.w - 1) // 2 - 4
                if ph > 0 and pw > 0:
                    owner[r.y // 2:r.y // 2 + ph, r.x // 2:r.x // 2 + pw] = ri
            reg, p = self._pnet_canvas(canvas_hwc, [r for _, r in mine], ho, wo)
            hit = (p > t1) & (owner >= 0)
            yy, xx = torch.nonzero(hit, as_tuple=True)
            if yy.numel() == 0:
                continue
            rid = owner[yy, xx]
            ry = torch.tensor([r.y // 2 for r in rects], device=dev)[rid]
            rx = torch.tensor([r.x // 2 for r in rects], device=dev)[rid]
            sc = torch.tensor([r.scale for r in rects], dtype=torch.float64, device=dev)[rid]
            im_id = torch.tensor([r.image for r in rects], device=dev)[rid]
            ly = (yy - ry).to(torch.float64)
            lx = (xx - rx).to(torch.float64)
            rg = reg[:, yy, xx].to(torch.float64)
            # the package's generate_bounding_box: cell corners (2x+1, 2y+1) and (2x+12, 2y+12),
            # regression scaled by the corners' difference (11)
            x1 = lx * PNET_STRIDE + 1 + rg[0] * (PNET_CELL - 1)
            y1 = ly * PNET_STRIDE + 1 + rg[1] * (PNET_CELL - 1)
            x2 = lx * PNET_STRIDE + PNET_CELL + rg[2] * (PNET_CELL - 1)
            y2 = ly * PNET_STRIDE + PNET_CELL + rg[3] * (PNET_CELL - 1)
            cand_boxes.append(torch.stack([x1, y1, x2, y2], 1) / sc[:, None])
            cand_scores.append(p[yy, xx].to(torch.float64))
            cand_img.append(im_id)
            cand_level.append(rid)
        if not cand_boxes:
            return None
        boxes = torch.cat(cand_boxes)
        scores = torch.cat(cand_scores)
        img_ids = torch.cat(cand_img)
        levels = torch.cat(cand_level)
        finite = torch.isfinite(boxes).all(1) & torch.isfinite(scores)
        boxes, scores, img_ids, levels = boxes[finite], scores[finite], img_ids[finite], levels[finite]
        keep = nms_indices(boxes, scores, levels, 0.5, "union", self.nms_mode)
        boxes, scores, img_ids = boxes[keep], scores[keep], img_ids[keep]
        keep = nms_indices(boxes, scores, img_ids, 0.7, "union", self.nms_mode)
        boxes, scores, img_ids = square_boxes(boxes[keep]), scores[keep], img_ids[keep]
        if boxes.shape[0] == 0:
            return None

        store = ImageStore(imgs)
        # ---------------- stage 2: RNet
        reg, prob = self._run_patches(self.rnet, store, boxes, img_ids, 24)
        scores = prob[:, 1].to(torch.float64)
        boxes = regress_boxes(boxes, reg)
        ok = (scores > t2) & torch.isfinite(boxes).all(1)
        boxes, scores, img_ids = boxes[ok], scores[ok], img_ids[ok]
        keep = nms_indices(boxes, scores, img_ids, 0.7, "union", self.nms_mode)
        boxes, scores, img_ids = square_boxes(boxes[keep]), scores[keep], img_ids[keep]
        if boxes.shape[0] == 0:
            return None
        # ---------------- stage 3: ONet
        reg, lm, prob = self._run_patches(self.onet, store, boxes, img_ids, 48)
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        lm = lm.to(torch.float64)
        lms = torch.cat([w * lm[:, :5] + boxes[:, 0:1] - 1, h * lm[:, 5:] + boxes[:, 1:2] - 1], 1)
        scores = prob[:, 1].to(torch.float64)
        boxes = regress_boxes(boxes, reg)
        ok = (scores > t3) & torch.isfinite(boxes).all(1) & torch.isfinite(lms).all(1)
        boxes, scores, img_ids, lms = boxes[ok], scores[ok], img_ids[ok], lms[ok]
        # IoU over the smaller box: torchvision has no such NMS, the package's rule is used
        keep = nms_indices(boxes, scores, img_ids, 0.7, "min", "reference")
        return img_ids[keep], boxes[keep], scores[keep], lms[keep]

    def _pnet_canvas(self, canvas_hwc: torch.Tensor, rects: list[MosaicRect], ho: int, wo: int):
        """PNet over a mosaic canvas: (box regression (4, ho, wo), p(face) (ho, wo)).

        Runs in horizontal strips of about ``PNET_STRIP_PIXELS`` canvas pixels (output cell row
        ``o`` reads canvas rows ``2o .. 2o + 11``), which gives the same numbers as one pass and
        keeps every buffer small enough to be reused from the heap.
        """
        CH, CW = canvas_hwc.shape[:2]
        step = max(1, (PNET_STRIP_PIXELS // CW - 10) // 2)
        regs, probs = [], []
        for a in range(0, ho, step):  # loop over strips (a few per canvas)
            b = min(ho, a + step)
            y0 = 2 * a  # canvas row of the strip's first conv1 row
            x = self.pnet.stem(canvas_hwc[y0:2 * b + 10].permute(2, 0, 1)[None])  # (1, 10, rows, CW-2)
            rows = x.shape[2]
            # A level alone has (w-2) conv1 columns; when that is odd, Keras' "same" pooling pools
            # its last column alone. In the mosaic it would share a window with the next column:
            # set that column (and likewise the row) to -inf so the window's max is the level's.
            for r in rects:  # loop over pyramid levels
                if (r.w - 2) % 2:
                    lo, hi = max(r.y - y0, 0), min(r.y + r.h - 1 - y0, rows)
                    if lo < hi:
                        x[:, :, lo:hi, r.x + r.w - 2] = float("-inf")
                if (r.h - 2) % 2 and 0 <= r.y + r.h - 2 - y0 < rows:
                    x[:, :, r.y + r.h - 2 - y0, r.x:r.x + r.w - 1] = float("-inf")
            # 2x2 max pooling (sizes are even); four strided maxima beat max_pool2d here (2-4x
            # on channels-last tensors, measured)
            x = torch.maximum(torch.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]),
                              torch.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]))
            reg, prob = self.pnet.head(x)
            regs.append(reg[0, :, :, :wo])
            probs.append(prob[0, 1, :, :wo])
        return torch.cat(regs, 1), torch.cat(probs, 0)

    def _run_patches(self, net, store: ImageStore, boxes, img_ids, size):
        outs = []
        for s in range(0, boxes.shape[0], self.patch_batch):  # bounded memory, chunks of boxes
            patches = store.crop_and_resize(boxes[s:s + self.patch_batch], img_ids[s:s + self.patch_batch], size)
            outs.append(net(patches))
        return tuple(torch.cat(parts) for parts in zip(*outs))


# --------------------------------------------------------------------------- rotation
def _unrotate(face: Face, k: int, width: int, height: int) -> Face:
    """Map a face found on ``np.rot90(image, k)`` (k quarter turns counter-clockwise) back."""

    def back(x: float, y: float) -> tuple[float, float]:
        if k == 1:  # rotated size (W=height, H=width): original (x, y) -> (y, width - x)
            return width - y, x
        if k == 2:
            return width - x, height - y
        if k == 3:  # original (x, y) -> (height - y, x)
            return y, height - x
        return x, y

    x, y, w, h = face.box
    xa, ya = back(x, y)
    xb, yb = back(x + w, y + h)
    x1, x2 = min(xa, xb), max(xa, xb)
    y1, y2 = min(ya, yb), max(ya, yb)
    kps = {name: back(*pt) for name, pt in face.keypoints.items()}
    return Face(box=(x1, y1, x2 - x1, y2 - y1), confidence=face.confidence, keypoints=kps,
                rotation=90 * k)


_DETECTORS: dict[str, FaceDetector] = {}
_LOCK = threading.Lock()

# glibc returns every freed block above its mmap threshold to the kernel at once, so each pyramid
# level's large float64 buffers were page-faulted in afresh: ~45% of a detection's time went to
# the kernel (measured: sys 49 s vs user 60 s over the speed benchmark). Keeping blocks up to
# 32 MB in the heap, and up to 256 MB of free heap before trimming, took the benchmark from 0.64
# to 0.42 s/photo (docs/benchmarks.md). Applied once, when the CPU detector is first created;
# APPAREAL_FACE_MALLOC_TUNING=0 leaves malloc alone.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_malloc_tuned = False


def tune_malloc_for_detection() -> bool:
    """Keeps large freed buffers in the process heap (glibc only); True when applied."""
    global _malloc_tuned
    if _malloc_tuned or os.environ.get("APPAREAL_FACE_MALLOC_TUNING", "1") == "0":
        return _malloc_tuned
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
              and libc.mallopt(_M_TRIM_THRESHOLD, 256 * 1024 * 1024)
              and libc.mallopt(_M_TOP_PAD, 64 * 1024 * 1024))
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    _malloc_tuned = bool(ok)
    return _malloc_tuned


def get_detector(device=None) -> FaceDetector:
    """The process-wide detector for ``device`` (created on first use, then reused)."""
    key = str(torch.device(device)) if device is not None else "cpu"
    det = _DETECTORS.get(key)
    if det is None:
        with _LOCK:
            det = _DETECTORS.get(key)
            if det is None:
                if key == "cpu":
                    tune_malloc_for_detection()
                det = FaceDetector(key)
                _DETECTORS[key] = det
    return det
