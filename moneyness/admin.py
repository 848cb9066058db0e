"""Read-only admin lists of the moneyness tables. Their rows have composite keys, so a row is
never opened by key: the lists have no links, and a crafted change URL is a 404."""

from django.contrib import admin
from django.http import Http404

from moneyness.models import AtmIv, AtmIvConstantMaturity, MoneynessGreeks


class _ReadOnlyList(admin.ModelAdmin):
    list_display_links = None
    list_select_related = ("underlying",)
    show_full_result_count = False  # count(*) over a partitioned year is slow; the list pages

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_object(self, request, object_id, from_field=None):
        raise Http404("rows of this table are listed, not opened by key")


@admin.register(MoneynessGreeks)
class MoneynessGreeksAdmin(_ReadOnlyList):
    list_display = ("ts", "underlying", "expiry", "level", "all_iv", "all_delta", "all_count", "strike_min",
                    "strike_max")  # fmt: skip
    list_filter = ("level",)
    date_hierarchy = "ts"


@admin.register(AtmIv)
class AtmIvAdmin(_ReadOnlyList):
    list_display = ("ts", "underlying", "expiry", "iv", "call_iv", "put_iv", "iv_skew", "forward", "atm_strike",
                    "option_count", "svi_rmse_vol")  # fmt: skip
    date_hierarchy = "ts"


@admin.register(AtmIvConstantMaturity)
class AtmIvConstantMaturityAdmin(_ReadOnlyList):
    list_display = ("ts", "underlying", "tenor_days", "iv", "status", "lower_expiry", "upper_expiry")
    date_hierarchy = "ts"
