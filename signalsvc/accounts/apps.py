from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AccountsConfig(AppConfig):
    name = "signalsvc.accounts"
    label = "accounts"

    def ready(self) -> None:
        from signalsvc.accounts import schema  # noqa: F401 - registers the OpenAPI security scheme
        from signalsvc.accounts.models import ApiKey, Subscription, Tier
        from signalsvc.accounts.services import auth_changed

        # Cache invalidation must not depend on which code path changed a key: a signal catches
        # the admin, the services and the shell alike.
        for model in (ApiKey, Subscription, Tier):
            post_save.connect(auth_changed, sender=model, dispatch_uid=f"auth-changed-save-{model.__name__}")
            post_delete.connect(
                auth_changed, sender=model, dispatch_uid=f"auth-changed-delete-{model.__name__}"
            )
