"""The settings of a training run: what a request may ask for, checked, with the defaults.

A run trains the networks of a target (apparent, real, the full paper pipeline) with a recipe
(``modeling.recipes``): ``auto`` (the default, ``MODELING_DEFAULT_RECIPE``) lets the worker that
picks the run up choose by its device and the budget, a named recipe is used as it is, and
``custom`` trains one network per stage with the single-net fields (backbone, image size, epochs,
batch size, learning rate...). A request that gives single-net fields without a recipe asks for
``custom`` (what the API accepted before recipes existed). The budget (``max_minutes``) is the
whole run's networks; empty: the recipe's own.
"""
from __future__ import annotations

from django.conf import settings

from modeling import pipeline, recipes

BACKBONES = ("small", "efficientnet_lite0", "vgg16")
RECIPE_CHOICES = (recipes.AUTO, *recipes.RECIPES, recipes.CUSTOM)
# Settings every run has; the custom recipe's fields come on top (recipes.CUSTOM_FIELDS).
RUN_FIELDS = ("recipe", "target", "max_minutes", "export", "export_id", "include_simulated", "min_kept_votes")


class TrainingRefused(Exception):
    """A training request that is not accepted; `status_code` is the HTTP answer."""

    status_code = 400

    def __init__(self, message: str, field: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code:
            self.status_code = status_code


def custom_defaults() -> dict:
    """The custom recipe's single-net settings when none are given: a small budget that finishes
    on a laptop CPU."""
    return {"backbone": settings.MODELING_DEFAULT_BACKBONE, "pretrained": "none", "image_size": 64, "epochs": 8,
            "batch_size": 32, "lr": 1e-3, "warmup_steps": 20, "patience": 5, "limit_train": None, "seed": 0}


def default_train_settings() -> dict:
    return {"recipe": settings.MODELING_DEFAULT_RECIPE, "target": "full",
            "max_minutes": settings.MODELING_DEFAULT_MAX_MINUTES, "export": "latest", "include_simulated": True,
            "min_kept_votes": None}


# (key, type, lowest, highest, the message when it is not a number in that range)
NUMBERS = (
    ("image_size", int, 32, 256, "The image size must be a whole number of pixels from 32 to 256."),
    ("epochs", int, 1, 500, "Epochs must be a whole number from 1 to 500."),
    ("batch_size", int, 1, 1024, "The batch size must be a whole number from 1 to 1024."),
    ("lr", float, 1e-6, 1.0, "The learning rate must be between 1e-6 and 1."),
    ("warmup_steps", int, 0, 100_000, "Warm-up steps must be a whole number from 0 to 100000."),
    ("patience", int, 1, 1000, "Patience must be a whole number of epochs from 1 to 1000."),
    ("max_minutes", float, 0.05, 7 * 24 * 60, "The budget must be between 0.05 and 10080 minutes."),
    ("limit_train", int, 1, 10_000_000, "limit_train must be a positive whole number."),
    ("seed", int, 0, 2**31 - 1, "The seed must be a non-negative whole number."),
    ("min_kept_votes", int, 1, 10_000, "The minimum number of kept votes must be between 1 and 10000."),
)


def _num(data, key, cast, lo, hi, message):
    value = data.get(key)
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise TrainingRefused(message, key)
    try:
        value = cast(value)
    except (TypeError, ValueError):
        raise TrainingRefused(message, key) from None
    if cast is int and str(data.get(key)).strip() not in (str(value), f"{value}.0"):
        raise TrainingRefused(message, key)  # 2.5 epochs is not 2
    if not lo <= value <= hi:
        raise TrainingRefused(message, key)
    return value


def _given(data: dict, key: str) -> bool:
    return data.get(key) not in (None, "")


def _recipe(data: dict) -> str:
    custom_given = [k for k in recipes.CUSTOM_FIELDS if _given(data, k)]
    name = str(data.get("recipe") or "")
    if not name:
        if custom_given:
            return recipes.CUSTOM
        name = settings.MODELING_DEFAULT_RECIPE
        if name not in RECIPE_CHOICES:
            raise TrainingRefused(f"The site's MODELING_DEFAULT_RECIPE, {name!r}, is not a recipe: choose one among "
                                  f"{', '.join(RECIPE_CHOICES)}.", "recipe")
        return name
    if name not in RECIPE_CHOICES:
        raise TrainingRefused(f"Choose a recipe among {', '.join(RECIPE_CHOICES)}.", "recipe")
    if name != recipes.CUSTOM and custom_given:
        raise TrainingRefused(f"{', '.join(custom_given)} only apply to the custom recipe; the {name} recipe "
                              "sets them itself.", custom_given[0])
    return name


def _custom(data: dict, out: dict) -> None:
    out.update(custom_defaults())
    backbone = str(data.get("backbone") or out["backbone"])
    if backbone not in BACKBONES:
        raise TrainingRefused(f"Choose a backbone among {', '.join(BACKBONES)}.", "backbone")
    out["backbone"] = backbone
    pretrained = str(data.get("pretrained") or ("none" if backbone == "small" else "imagenet"))
    if pretrained not in ("imagenet", "none"):
        raise TrainingRefused("pretrained must be 'imagenet' or 'none'.", "pretrained")
    out["pretrained"] = "none" if backbone == "small" else pretrained


def clean_train_settings(data: dict | None) -> dict:
    """Validated settings of a run (missing keys take the defaults), or TrainingRefused naming the field."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(RUN_FIELDS) - set(recipes.CUSTOM_FIELDS))
    if unknown:
        raise TrainingRefused(f"Unknown setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}.", unknown[0])
    out = default_train_settings()
    out["recipe"] = _recipe(data)
    target = str(data.get("target") or out["target"])
    if target not in pipeline.TARGETS:
        raise TrainingRefused(f"Choose a target among {', '.join(sorted(pipeline.TARGETS))}.", "target")
    out["target"] = target
    if out["recipe"] == recipes.CUSTOM:
        _custom(data, out)
    for key, cast, lo, hi, msg in NUMBERS:
        value = _num(data, key, cast, lo, hi, msg)
        if value is not None:  # (single-net fields reach here only for the custom recipe)
            out[key] = value
    if out["recipe"] == recipes.CUSTOM and out.get("max_minutes") is None:
        out["max_minutes"] = 5.0  # a custom run always has a budget, as runs before recipes had
    export = data.get("export", data.get("export_id"))
    if export in (None, ""):
        export = out["export"]
    if export not in ("now", "latest"):
        try:
            export = int(export)
        except (TypeError, ValueError):
            raise TrainingRefused("Choose a finished export, 'latest', or 'now'.", "export") from None
    out["export"] = export
    if "include_simulated" in data:
        value = data.get("include_simulated")
        out["include_simulated"] = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "on", "yes")
    return out


def recipe_choices() -> list[tuple[str, str]]:
    """(name, title) of every recipe a run may ask for, for the retrain form."""
    return ([(recipes.AUTO, "Automatic: chosen by the worker's device and the budget (CPU, one GPU, several GPUs)")]
            + [(r.name, r.title) for r in recipes.RECIPES.values()]
            + [(recipes.CUSTOM, "Custom: one network per stage with the settings below")])
