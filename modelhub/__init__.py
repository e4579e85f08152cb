"""The Django side of the age models: the registry of training runs and model versions, the
services and Celery tasks that train and predict, the staff pages and the API. The torch core it
drives is `modeling` (no Django there). The app's label is "modeling" (see apps.py).

Modules the web process imports with its URLs (views, admin, selectors, registry, maps and the
runs/promotion/predictions services) load torch only on first use, so a web worker that never
trains or predicts does not pay its import time and memory; `services.training` and `tasks`
import the core at the top."""
