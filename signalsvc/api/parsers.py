"""JSON request bodies: DRF's parser, with a body nested deeper than the interpreter's recursion limit
refused as malformed (400 ``malformed_request``) like any other JSON it cannot parse, instead of the
RecursionError escaping as a 500 (found by tests/fuzz)."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class JsonParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
