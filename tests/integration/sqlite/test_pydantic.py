"""``@app.task(pydantic=True)``: models in, models out, validated at the worker."""

from __future__ import annotations

import pytest

from tests.conftest import Project

TASKS = """
from typing import Optional
from pydantic import BaseModel
from celeriac import Celery

app = Celery("tasks")


class Order(BaseModel):
    item: str
    quantity: int


class Receipt(BaseModel):
    item: str
    total: float


@app.task(pydantic=True)
def checkout(order: Order, price: float) -> Receipt:
    assert isinstance(order, Order)
    return Receipt(item=order.item, total=order.quantity * price)


@app.task(pydantic=True)
async def acheckout(order: Order, coupon: Optional[Order] = None) -> Receipt:
    assert isinstance(order, Order)
    return Receipt(item=order.item, total=float(order.quantity) - (coupon.quantity if coupon else 0))


@app.task(pydantic=True, pydantic_strict=True)
def strict_checkout(order: Order) -> Receipt:
    return Receipt(item=order.item, total=order.quantity)
"""


@pytest.fixture
def shop(project: Project) -> Project:
    project.write("tasks.py", TASKS)
    return project


@pytest.mark.parametrize("pool", ["prefork", "asyncio"])
def test_models_are_validated_and_dumped(shop: Project, pool: str) -> None:
    worker = shop.worker("tasks", "-P", pool, "-c", "2")
    from tasks import Order, acheckout, checkout, strict_checkout  # type: ignore[import-not-found]

    # A dict or a model instance (sent as its dict) both arrive as an Order.
    assert checkout.delay({"item": "tea", "quantity": 3}, 1.5).get(timeout=30) == {"item": "tea", "total": 4.5}
    assert checkout.delay(Order(item="tea", quantity=2), 2.0).get(timeout=30) == {"item": "tea", "total": 4.0}
    assert acheckout.delay(Order(item="jam", quantity=5)).get(timeout=30) == {"item": "jam", "total": 5.0}
    assert acheckout.delay({"item": "jam", "quantity": 5}, {"item": "x", "quantity": 2}).get(timeout=30) == {
        "item": "jam",
        "total": 3.0,
    }
    # Lax by default ("3" is coerced), strict on request.
    assert checkout.delay({"item": "tea", "quantity": "3"}, 1.0).get(timeout=30)["total"] == 3.0
    with pytest.raises(Exception, match="quantity") as strict:
        strict_checkout.delay({"item": "tea", "quantity": "3"}).get(timeout=30)
    assert "ValidationError" in type(strict.value).__name__
    # A bad argument fails the task with a message naming the field, and the worker goes on.
    bad = checkout.delay({"item": "tea"}, 1.0)
    with pytest.raises(Exception, match="quantity"):
        bad.get(timeout=30)
    assert bad.state == "FAILURE"
    assert "Field required" in (bad.traceback or "")
    assert checkout.delay({"item": "ok", "quantity": 1}, 1.0).get(timeout=30) == {"item": "ok", "total": 1.0}
    assert worker.stop() == 0


def test_without_pydantic_installed_the_error_is_clear(shop: Project) -> None:
    done = shop.python(
        """
        import sys
        sys.modules["pydantic"] = None  # as if not installed
        from celeriac import Celery
        app = Celery("x")
        try:
            @app.task(pydantic=True)
            def f(x): return x
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    assert "ImproperlyConfigured" in done.stdout and "pip install 'celeriac[pydantic]'" in done.stdout, done.stderr
