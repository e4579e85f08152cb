from django.apps import AppConfig


class ModelhubConfig(AppConfig):
    """The Django side of the age models (registry, runs, tasks, pages). Its label stays
    "modeling", the app's name before the torch core and the Django side were split: the
    database tables (modeling_*), the migration history and "modeling.ModelVersion" references
    are unchanged."""

    name = "modelhub"
    label = "modeling"
    verbose_name = "Age models"
