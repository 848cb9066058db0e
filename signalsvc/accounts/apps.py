from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "signalsvc.accounts"
    label = "accounts"
