from django.apps import AppConfig


class InstrumentsConfig(AppConfig):
    name = "signalsvc.instruments"
    label = "instruments"
