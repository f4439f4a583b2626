"""Daily sales shaped like the M5 competition data: many products, few sales, weekly rhythm.

:class:`Sales` simulates ``n_products`` products (M5 has 30,490: 3,049 items in 10 stores) day
by day, the way a retailer sees them: each morning the features of every product are known
(weekday, price, promotions, events, SNAP days and the recent sales history), each evening
the day's sales arrive. Everything is drawn from a seeded random generator, so the same
``seed`` gives the same stream everywhere.

What shapes the sales of product ``i`` on day ``d`` (a Poisson draw, zeroed on "no demand" days):

- a base level, log-normal across products (most sell less than one unit a day);
- intermittency: each product has its own probability of a day without any demand;
- weekly seasonality: weekends sell more, with a per-product twist;
- price: promotions cut the price by 10-40 % for a few days; demand follows the price with a
  per-product elasticity;
- events (about one day a month, uplift depending on the category) and SNAP days (the first ten
  days of a month, food only);
- a slow per-product trend.

Examples
--------
>>> sales = Sales(n_products=20, seed=1)
>>> sales.ids[:2]
['FOODS_1_001_CA_1', 'HOUSEHOLD_1_001_CA_1']
>>> day = sales.day()
>>> len(day.rows), sorted(day.rows[0])
(20, ['discount', 'event', 'lag_7', 'mean_28', 'mean_7', 'price', 'snap', 'wday'])
>>> Sales(n_products=20, seed=1).day().sales == day.sales
True

Run ``python -m model_wrappers.synthetic sales.csv --products 100 --days 90`` to write a CSV
(one row per product and day: ``product_id``, ``day``, the features and ``sales``).

"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
from typing import Any, Iterator

import numpy as np

FEATURES = ("wday", "price", "discount", "event", "snap", "lag_7", "mean_7", "mean_28")
KEY = "product_id"
TARGET = "sales"
M5_PRODUCTS = 30_490
STORES = ("CA_1", "CA_2", "CA_3", "CA_4", "TX_1", "TX_2", "TX_3", "WI_1", "WI_2", "WI_3")
# (category, departments, share of items, typical price) roughly as in M5.
CATEGORIES = (("FOODS", 3, 0.47, 3.0), ("HOUSEHOLD", 2, 0.34, 5.5), ("HOBBIES", 2, 0.19, 6.5))
WEEKLY = np.array([0.95, 0.9, 0.9, 0.95, 1.1, 1.35, 1.3])  # Monday .. Sunday
EVENT_UPLIFT = {"FOODS": 1.25, "HOUSEHOLD": 0.95, "HOBBIES": 1.15}
HISTORY = 28


def product_ids(n: int) -> list[str]:
    """M5-style ids ``<CAT>_<dept>_<item>_<store>``: every item in every store, store by store."""
    needed = math.ceil(n / len(STORES))
    items = []
    for i, (cat, depts, share, _) in enumerate(CATEGORIES):
        if i == len(CATEGORIES) - 1:
            count = needed - len(items)
        else:  # at least one food item, however few products
            count = min(needed - len(items), math.ceil(needed * share) if i == 0 else round(needed * share))
        items += [f"{cat}_{j % depts + 1}_{j // depts + 1:03d}" for j in range(max(0, count))]
    return [f"{item}_{store}" for store in STORES for item in items[:needed]][:n]


@dataclasses.dataclass
class Day:
    """One simulated day: the features known in the morning and the sales of the evening."""

    index: int
    ids: list[str]
    rows: list[dict[str, float]]
    sales: list[float]

    def records(self) -> Iterator[tuple[str, dict[str, float], float]]:
        """``(product_id, features, sales)`` for every product."""
        return zip(self.ids, self.rows, self.sales)


class Sales:
    """A seeded day-by-day simulation of M5-like daily unit sales.

    Parameters
    ----------
    n_products
        How many products (keys); M5 has 30,490.
    seed
        Same seed, same products and same sales.

    """

    def __init__(self, n_products: int = M5_PRODUCTS, seed: int = 0):
        if n_products < 1:
            raise ValueError(f"n_products must be at least 1, got {n_products}")
        self.n = n_products
        self.seed = seed
        self.ids = product_ids(n_products)
        rng = np.random.default_rng([seed, 0])
        n = n_products
        cat_of = [next(i for i, c in enumerate(CATEGORIES) if pid.startswith(c[0])) for pid in self.ids]
        self.category = np.array(cat_of)
        self.level = rng.lognormal(mean=-0.4, sigma=1.1, size=n)
        self.no_demand = rng.beta(1.5, 3.0, size=n)
        self.weekly = WEEKLY[None, :] * np.exp(rng.normal(0.0, 0.12, size=(n, 7)))
        typical = np.array([c[3] for c in CATEGORIES])[self.category]
        self.base_price = np.round(typical * rng.lognormal(0.0, 0.5, size=n), 2) + 0.49
        self.elasticity = rng.uniform(0.5, 2.5, size=n)
        self.trend = rng.normal(0.0, 0.3, size=n)
        self.uplift = np.array([EVENT_UPLIFT[c[0]] for c in CATEGORIES])[self.category]
        self.food = self.category == 0
        self.snap_offset = np.array([{"CA": 0, "TX": 2, "WI": 4}[pid.rsplit("_", 2)[1]] for pid in self.ids])
        self.event_days = set(int(d) for d in np.flatnonzero(rng.random(3650) < 0.04))
        self._promo_left = np.zeros(n, dtype=int)
        self._promo_depth = np.zeros(n)
        # Sales history for the lag features: start from a burn-in of HISTORY days.
        self._history = np.zeros((HISTORY, n))
        self._next = -HISTORY
        while self._next < 0:
            self._step()

    def _step(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        d = self._next
        rng = np.random.default_rng([self.seed, 1, d + HISTORY])
        n = self.n
        wday = d % 7
        starts = (self._promo_left == 0) & (rng.random(n) < 0.03)
        self._promo_left[starts] = rng.integers(3, 10, size=int(starts.sum()))
        self._promo_depth[starts] = rng.uniform(0.1, 0.4, size=int(starts.sum()))
        on_promo = self._promo_left > 0
        price = np.round(self.base_price * np.where(on_promo, 1.0 - self._promo_depth, 1.0), 2)
        event = 1.0 if d in self.event_days else 0.0
        snap = (self.food & (((d % 30) + self.snap_offset) % 30 < 10)).astype(float)
        history = self._history
        features = {
            "wday": np.full(n, float(wday)),
            "price": price,
            "discount": on_promo.astype(float),
            "event": np.full(n, event),
            "snap": snap,
            "lag_7": history[-7].copy(),
            "mean_7": np.round(history[-7:].mean(axis=0), 4),
            "mean_28": np.round(history.mean(axis=0), 4),
        }
        rate = (
            self.level
            * self.weekly[:, wday]
            * (price / self.base_price) ** (-self.elasticity)
            * np.where(event > 0, self.uplift, 1.0)
            * np.where(snap > 0, 1.15, 1.0)
            * np.exp(self.trend * max(d, 0) / 365.0)
        )
        demand = rng.random(n) >= self.no_demand
        sales = np.where(demand, rng.poisson(rate), 0).astype(float)
        self._history = np.vstack([history[1:], sales[None, :]])
        self._promo_left[on_promo] -= 1
        self._next += 1
        return sales, features

    def day(self) -> Day:
        """The next day: every product's features and sales."""
        index = self._next
        sales, features = self._step()
        columns = [features[f].tolist() for f in FEATURES]
        rows = [dict(zip(FEATURES, values)) for values in zip(*columns)]
        return Day(index, self.ids, rows, sales.tolist())

    def days(self, count: int) -> Iterator[Day]:
        """The next ``count`` days."""
        for _ in range(count):
            yield self.day()


def stream(n_products: int, days: int, seed: int = 0) -> Iterator[tuple[str, dict[str, float], float]]:
    """``(product_id, features, sales)`` day after day, products in id order within a day."""
    for day in Sales(n_products, seed).days(days):
        yield from day.records()


def candidates() -> dict[str, Any]:
    """The two per-product models of the M5 case: a KNN regressor and a linear model.

    The KNN remembers the last four weeks of a product; the linear model learns price and
    calendar effects. Which of the two forecasts a product better differs from product to product.
    """
    from river import linear_model, neighbors, optim, preprocessing

    return {
        "knn": preprocessing.StandardScaler()
        | neighbors.KNNRegressor(n_neighbors=5, engine=neighbors.LazySearch(window_size=28)),
        "linear": preprocessing.StandardScaler()
        | linear_model.LinearRegression(optimizer=optim.SGD(0.01), intercept_lr=0.1),
    }


def write_csv(path: str, n_products: int, days: int, seed: int = 0) -> int:
    """Write ``days`` days of ``n_products`` products to a CSV; return the number of rows."""
    count = 0
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([KEY, "day", *FEATURES, TARGET])
        for day in Sales(n_products, seed).days(days):
            for pid, x, y in day.records():
                writer.writerow([pid, day.index, *(x[f] for f in FEATURES), y])
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_wrappers.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="file to write")
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = write_csv(args.csv, args.products, args.days, args.seed)
    print(f"wrote {args.csv}: {rows} rows ({args.products} products x {args.days} days)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
