"""Box arithmetic of the MTCNN cascade: the ``mtcnn`` package's NMS rule (and greedy NMS),
squaring and regression of boxes, and the RNet/ONet input patches (TensorFlow's
``crop_and_resize``) of every image of a call at once."""

from __future__ import annotations

import torch


# --------------------------------------------------------------------------- NMS
def pairwise_overlap(a: torch.Tensor, b: torch.Tensor, method: str) -> torch.Tensor:
    """IoU (``"union"``, = ``torchvision.ops.box_iou``) or intersection over the smaller area
    (``"min"``) of every box of ``a`` with every box of ``b`` (x1, y1, x2, y2; area without +1,
    as the package computes it)."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    if method == "union":
        return inter / (area_a[:, None] + area_b[None, :] - inter)
    return inter / torch.min(area_a[:, None], area_b[None, :])


def nms_indices(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float,
                method: str = "union", mode: str = "reference", chunk: int = 2048) -> torch.Tensor:
    """Indices kept by NMS within each group, ordered by descending score (stable).

    ``mode="reference"``: keep a box iff no higher-scoring box of its group overlaps it by more than
    ``threshold`` (the ``mtcnn`` package's rule). ``mode="greedy"``: classic NMS
    (``torchvision.ops.batched_nms``; union IoU only).
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    if mode == "greedy" and method == "union":
        # imported here: importing torchvision pulls in torch._dynamo, which adds ~75% to the
        # cold-start time of a process that only needs the reference rule
        from torchvision.ops import batched_nms

        return batched_nms(boxes.float(), scores.float(), groups, threshold)
    order = torch.argsort(scores, descending=True, stable=True)
    # sort by group, keeping score order inside a group
    order = order[torch.argsort(groups[order], stable=True)]
    b = boxes[order]
    g = groups[order]
    uniq, counts = torch.unique_consecutive(g, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    keep_mask = torch.ones(n, dtype=torch.bool, device=boxes.device)
    for s, c in zip(starts.tolist(), counts.tolist()):  # loop over groups (levels/images), not boxes
        bb = b[s:s + c]
        worst = torch.zeros(c, dtype=bb.dtype, device=bb.device)
        for r0 in range(0, c, chunk):
            r1 = min(c, r0 + chunk)
            ov = pairwise_overlap(bb[r0:r1], bb, method)  # (rows, c)
            ov = torch.nan_to_num(ov, nan=0.0)
            rows = torch.arange(r0, r1, device=bb.device)[:, None]
            cols = torch.arange(c, device=bb.device)[None, :]
            ov = torch.where(cols > rows, ov, torch.zeros((), dtype=ov.dtype, device=ov.device))
            worst = torch.maximum(worst, ov.max(dim=0).values)
        keep_mask[s:s + c] = worst <= threshold
    kept = order[keep_mask]
    # final order: descending score overall (stable), like the package's sorted outputs
    return kept[torch.argsort(scores[kept], descending=True, stable=True)]


def square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def regress_boxes(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + reg.to(boxes.dtype) * torch.stack([w, h, w, h], dim=1)


# --------------------------------------------------------------------------- patches
class ImageStore:
    """All normalised images of a call in one flat (3, sum H*W) float32 tensor, for gathers."""

    def __init__(self, images: list[torch.Tensor]):
        """``images``: normalised (H, W, 3) float32 tensors."""
        self.device = images[0].device
        self.h = torch.tensor([im.shape[0] for im in images], device=self.device)
        self.w = torch.tensor([im.shape[1] for im in images], device=self.device)
        sizes = self.h * self.w
        self.offset = torch.cumsum(sizes, 0) - sizes
        # (sum H*W, 3): pixel-major, so a gather copies whole RGB triples and the patches come
        # out channels-last, the fast layout for RNet/ONet's convolutions
        flat = [im.reshape(-1, 3) for im in images]
        self.flat = flat[0] if len(flat) == 1 else torch.cat(flat, dim=0)

    def crop_and_resize(self, boxes: torch.Tensor, image_ids: torch.Tensor, size: int) -> torch.Tensor:
        """TensorFlow ``crop_and_resize`` (bilinear, extrapolation 0) of float boxes -> (N,3,size,size)."""
        n = boxes.shape[0]
        if n == 0:
            return torch.zeros((0, 3, size, size), device=self.device)
        # image_ids index self.h/self.w/self.offset; flat holds every image's pixels (y, x) -> row
        H = self.h[image_ids].to(torch.float32)
        W = self.w[image_ids].to(torch.float32)
        b = boxes.to(torch.float32)
        # normalised coordinates, as the package passes them (float32)
        y1n, x1n, y2n, x2n = b[:, 1] / H, b[:, 0] / W, b[:, 3] / H, b[:, 2] / W
        k = torch.arange(size, dtype=torch.float32, device=self.device)
        hs = (y2n - y1n) * (H - 1) / (size - 1)
        ws = (x2n - x1n) * (W - 1) / (size - 1)
        in_y = (y1n * (H - 1))[:, None] + k[None, :] * hs[:, None]  # (N, size)
        in_x = (x1n * (W - 1))[:, None] + k[None, :] * ws[:, None]
        valid_y = (in_y >= 0) & (in_y <= (H - 1)[:, None])
        valid_x = (in_x >= 0) & (in_x <= (W - 1)[:, None])
        in_y = torch.nan_to_num(in_y, nan=-1.0)
        in_x = torch.nan_to_num(in_x, nan=-1.0)
        ty = torch.floor(in_y)
        tx = torch.floor(in_x)
        ly = in_y - ty
        lx = in_x - tx
        Hl = self.h[image_ids][:, None]
        Wl = self.w[image_ids][:, None]
        ty_i = ty.long().clamp(min=0)
        ty_i = torch.minimum(ty_i, Hl - 1)
        by_i = torch.minimum(torch.ceil(in_y).long().clamp(min=0), Hl - 1)
        tx_i = torch.minimum(tx.long().clamp(min=0), Wl - 1)
        bx_i = torch.minimum(torch.ceil(in_x).long().clamp(min=0), Wl - 1)
        off = self.offset[image_ids][:, None, None]
        Wl3 = Wl[:, :, None]
        idx_tl = off + ty_i[:, :, None] * Wl3 + tx_i[:, None, :]
        idx_tr = off + ty_i[:, :, None] * Wl3 + bx_i[:, None, :]
        idx_bl = off + by_i[:, :, None] * Wl3 + tx_i[:, None, :]
        idx_br = off + by_i[:, :, None] * Wl3 + bx_i[:, None, :]

        def g(idx):  # -> (N, size, size, 3)
            return self.flat.index_select(0, idx.reshape(-1)).reshape(n, size, size, 3)

        tl, tr, bl, br = g(idx_tl), g(idx_tr), g(idx_bl), g(idx_br)
        lx4 = lx[:, None, :, None]
        ly4 = ly[:, :, None, None]
        top = tl + (tr - tl) * lx4
        bottom = bl + (br - bl) * lx4
        out = top + (bottom - top) * ly4
        valid = (valid_y[:, :, None] & valid_x[:, None, :])[:, :, :, None]
        out = torch.where(valid, out, torch.zeros((), dtype=out.dtype, device=out.device))
        return out.permute(0, 3, 1, 2)  # NCHW view of channels-last memory
