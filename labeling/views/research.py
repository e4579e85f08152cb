"""The research page (staff and researchers): the crowd's statistics and the paper's figures.

Figures are drawn server-side with matplotlib's Agg canvas (no pyplot state, so safe under threads)
and inlined as PNG data URIs: nothing is fetched from a CDN.
"""
from __future__ import annotations

import base64
import io

import numpy as np
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils import timezone
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from labeling.selectors.exports import can_export
from labeling.selectors.research import research_stats


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def apparent_histogram(apparent) -> str:
    """Fig. 2 of the paper: how many photos have each apparent age."""
    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    ax.hist(apparent, bins=np.arange(0, 102, 2), color="#3b6fd8")
    ax.set_xlabel("apparent age (crowd mean, years)")
    ax.set_ylabel("photos")
    ax.set_xlim(0, 100)
    return _png(fig)


def real_vs_apparent(real, apparent) -> str:
    """Fig. 3 of the paper: real vs apparent age, with the y = x line."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    alpha = 0.6 if len(real) < 2000 else 0.2
    ax.scatter(real, apparent, s=6, alpha=alpha, color="#3b6fd8", linewidths=0)
    ax.plot([0, 100], [0, 100], color="#d33", lw=1, label="y = x")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_aspect("equal")
    ax.set_xlabel("real age")
    ax.set_ylabel("apparent age")
    ax.legend(loc="upper left")
    return _png(fig)


def votes_histogram(votes_per_photo) -> str:
    fig = Figure(figsize=(6, 2.6))
    ax = fig.add_subplot()
    top = int(max(votes_per_photo.max(initial=0), 1))
    ax.hist(votes_per_photo, bins=np.arange(0, top + 2) - 0.5 if top <= 60 else 60, color="#5a9e6f")
    ax.set_xlabel("votes per photo")
    ax.set_ylabel("photos")
    return _png(fig)


def export_histogram(histogram: dict) -> str | None:
    counts = histogram.get("counts") or []
    width = histogram.get("bin_years", 5)
    if not counts:
        return None
    fig = Figure(figsize=(6, 2.6))
    ax = fig.add_subplot()
    ax.bar([i * width for i in range(len(counts))], counts, width=width, align="edge", color="#8a6fd8")
    ax.set_xlabel("apparent age (years)")
    ax.set_ylabel("photos in the export")
    return _png(fig)


CACHE_SECONDS = 120


def _page_data(include_simulated: bool) -> dict:
    stats = research_stats(include_simulated=include_simulated)
    figures = {}
    if stats.photos_with_consensus:
        figures["histogram"] = apparent_histogram(stats.apparent_ages)
        figures["scatter"] = real_vs_apparent(stats.real_ages, stats.apparent_ages)
    if stats.votes_per_photo.size:
        figures["votes"] = votes_histogram(stats.votes_per_photo)
    export = stats.latest_export
    if export is not None and export.counts.get("apparent_age_histogram"):
        figures["export"] = export_histogram(export.counts["apparent_age_histogram"])
    return {"stats": stats, "figures": figures, "export": export, "computed_at": timezone.now()}


@login_required
def research_page(request):
    if not can_export(request.user):
        raise PermissionDenied("The research page is for staff and researchers only.")
    include_simulated = request.GET.get("simulated", "1") != "0"
    # The statistics scan every photo and vote (seconds at 1M votes): computed at most every
    # CACHE_SECONDS per variant and shared by all researchers; ?refresh=1 recomputes now.
    key = f"labeling:research-page:{int(include_simulated)}"
    data = None if request.GET.get("refresh") else cache.get(key)
    if data is None:
        data = _page_data(include_simulated)
        cache.set(key, data, CACHE_SECONDS)
    return render(request, "labeling/research.html", {
        **data, "include_simulated": include_simulated, "cache_seconds": CACHE_SECONDS, "is_researcher": True,
    })
