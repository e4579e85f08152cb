from django.core.management.base import BaseCommand

from modelhub.services.runs import resume_interrupted_runs


class Command(BaseCommand):
    help = "Queue again the training runs a stopped worker left half-done (workers also do this when they start)."

    def handle(self, *args, **opts):
        resumed = resume_interrupted_runs()
        self.stdout.write(f"resumed runs: {resumed or 'none'}")
