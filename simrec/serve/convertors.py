"""The URL convertor for product ids: any text, ``/`` and newlines included.

Starlette's ``path`` convertor matches ``.*``, which stops at a newline, so a product id
with ``\\n`` (``%0A`` in its URL) would not reach its route. ``{product_id:product_id}``
matches everything; the route then looks the id up in the catalog, so no URL ever names
a file.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class ProductIdConvertor(Convertor[str]):
    regex = "[\\s\\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("product_id", ProductIdConvertor())
