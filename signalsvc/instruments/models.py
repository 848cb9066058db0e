from django.db import models

from signalsvc.core import keys


class Instrument(models.Model):
    """The instrument registry (SPEC §4). ``key`` is the canonical key text."""

    PRODUCT_CHOICES = [(p, p) for p in keys.PRODUCTS]
    OPTION_TYPE_CHOICES = [(t, t) for t in keys.OPTION_TYPES]

    key = models.CharField(max_length=128, unique=True)
    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=32)
    product = models.CharField(max_length=32, choices=PRODUCT_CHOICES)
    expiry = models.DateField(null=True, blank=True)
    option_type = models.CharField(max_length=4, choices=OPTION_TYPE_CHOICES, null=True, blank=True)
    strike = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    lot_size = models.PositiveIntegerField(default=1)
    tick_size = models.DecimalField(max_digits=10, decimal_places=4, default="0.05")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["exchange", "symbol", "product", "expiry"], name="instr_chain_idx"),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def parsed(self) -> keys.InstrumentKey:
        return keys.parse_key(self.key)
