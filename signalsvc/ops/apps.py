from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "signalsvc.ops"
    label = "ops"
