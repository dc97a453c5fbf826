"""Pools: where tasks run (``prefork``, ``threads``, ``solo``)."""
