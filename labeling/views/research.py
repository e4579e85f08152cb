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

from labeling.selectors.crowd_research import crowd_model_stats
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


def _histogram(values, *, xlabel: str, ylabel: str, color: str, bins, marker: float | None = None,
               marker_label: str = "") -> str:
    fig = Figure(figsize=(6, 2.6))
    ax = fig.add_subplot()
    ax.hist(values, bins=bins, color=color)
    if marker is not None:
        ax.axvline(marker, color="#d33", lw=1, label=marker_label)
        ax.legend(loc="upper right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _png(fig)


def crowd_figures(crowd) -> dict:
    """Votes per retired photo, the SE of the rater-aware estimates, the raters' biases and noise."""
    figures = {}
    if crowd.votes_per_retired.size:
        top = int(max(crowd.votes_per_retired.max(), 1))
        figures["retired_votes"] = _histogram(
            crowd.votes_per_retired, xlabel="votes per retired photo", ylabel="photos", color="#5a9e6f",
            bins=np.arange(0, top + 2) - 0.5 if top <= 80 else 60, marker=crowd.rule.hard_cap, marker_label="hard cap")
    if crowd.se.size:
        figures["se"] = _histogram(np.minimum(crowd.se, 10.0), xlabel="standard error of the rater-aware estimate "
                                   "(years, 10 = 10 or more)", ylabel="photos", color="#3b6fd8", bins=50,
                                   marker=crowd.rule.target_se, marker_label="target")
    if crowd.rater_bias.size:
        figures["bias"] = _histogram(np.clip(crowd.rater_bias, -15, 15), xlabel="rater bias (years too old +, too "
                                     "young -)", ylabel="raters", color="#8a6fd8", bins=np.arange(-15, 15.5, 1.0))
        figures["noise"] = _histogram(np.minimum(crowd.rater_noise, 40), xlabel="rater noise: SD of their guesses "
                                      "(years, 40 = 40 or more)", ylabel="raters", color="#d88a3b", bins=40)
    return figures


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
    crowd = crowd_model_stats(include_simulated=include_simulated)
    figures.update(crowd_figures(crowd))
    return {"stats": stats, "crowd": crowd, "figures": figures, "export": export, "computed_at": timezone.now()}


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
