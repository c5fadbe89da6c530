"""Realistic synthetic events: Python-style stack traces with context lines and vars holding memory
addresses, a Zipf-like popularity over bases, varying line numbers and messages.

Used by `manage.py load_demo_data` and by the benchmarks in bench/.
"""

import random
from datetime import UTC, datetime, timedelta

SERVICES = ["Wish FE", "merchant-be", "payments", "search-api", "notifications"]
ENVIRONMENTS = ["prod", "prod", "prod", "stage"]
EXCEPTIONS = [
    ("ZeroDivisionError", "integer division or modulo by zero"),
    ("KeyError", "'{word}_id'"),
    ("ValueError", "invalid literal for int() with base 10: '{word}'"),
    ("TypeError", "unsupported operand type(s) for +: 'int' and '{word}'"),
    ("AttributeError", "'NoneType' object has no attribute '{word}'"),
    ("TimeoutError", "timed out after {n}ms waiting for {word}"),
    ("ConnectionError", "connection to {word}-db:{n} refused"),
    ("IndexError", "list index out of range"),
    ("PermissionError", "user {n} may not access {word}"),
    ("RuntimeError", "{word} failed after {n} retries"),
]
WORDS = [
    "order",
    "cart",
    "user",
    "merchant",
    "invoice",
    "payment",
    "session",
    "product",
    "coupon",
    "shipment",
    "refund",
    "review",
    "wishlist",
    "token",
    "search",
    "image",
    "price",
    "stock",
    "address",
    "email",
]
VERBS = ["get", "load", "save", "update", "compute", "validate", "render", "fetch", "apply", "send"]
PACKAGES = ["api", "core", "billing", "catalog", "checkout", "accounts", "search", "tasks", "utils", "models"]
FILTERS = {
    "instance": ["exception_python_process_stack_vars"],
    "base": ["exception_python_remove_line_no", "exception_python_remove_stack_vars"],
    "extra_args": [],
}


def _address(rng: random.Random) -> str:
    return f"0x7f{rng.getrandbits(40):010x}"


def make_base_templates(count: int, seed: int = 7) -> list[dict]:
    """`count` distinct bases: a service, an environment, an exception and a stack of 3 to 15 frames."""
    rng = random.Random(seed)
    templates = []
    for index in range(count):
        name, message = EXCEPTIONS[index % len(EXCEPTIONS)]
        frames = []
        for depth in range(rng.randint(3, 15)):
            package = rng.choice(PACKAGES)
            module_name = f"{rng.choice(WORDS)}s"
            function = f"{rng.choice(VERBS)}_{rng.choice(WORDS)}"
            lineno = rng.randint(10, 900)
            frames.append(
                {
                    "function": function,
                    "module": f"{package}.{module_name}",
                    "filename": f"{package}/{module_name}.py",
                    "abs_path": f"/srv/app/{package}/{module_name}.py",
                    "lineno": lineno,
                    "pre_context": [
                        f"def {function}(self, {rng.choice(WORDS)}):",
                        '    """Load and check."""',
                        f"    value = self.{rng.choice(VERBS)}({rng.choice(WORDS)})",
                    ],
                    "context_line": f"    return value / self.{rng.choice(WORDS)}_count"
                    if depth % 2
                    else f"    result = {rng.choice(VERBS)}_{rng.choice(WORDS)}(value)",
                    "post_context": ["", f"def helper_{depth}(x):", "    return x"],
                    "vars": {
                        "self": f"<{module_name.title()}Handler object at {{address}}>",
                        "value": rng.randint(0, 99),
                        "request": f"<WSGIRequest: GET '/{rng.choice(WORDS)}/'>",
                    },
                }
            )
        templates.append(
            {
                "service": SERVICES[index % len(SERVICES)],
                "environment": ENVIRONMENTS[(index // len(SERVICES)) % len(ENVIRONMENTS)],
                "event_type": "python",
                "event_name": name,
                "message": message,
                "frames": frames,
                # Distinguishes bases that would otherwise share name and frames.
                "variant": index,
            }
        )
    return templates


def make_event(template: dict, rng: random.Random, timestamp: datetime | None = None) -> dict:
    """One occurrence of a base: fresh memory addresses, sometimes another line number, a varying message."""
    word, n = rng.choice(WORDS), rng.randint(1, 5000)
    frames = []
    for position, frame in enumerate(template["frames"]):
        frame = {**frame, "vars": {**frame["vars"], "self": frame["vars"]["self"].replace("{address}", _address(rng))}}
        if position == len(template["frames"]) - 1 and rng.random() < 0.2:
            frame["lineno"] = frame["lineno"] + rng.randint(1, 3)  # a deploy moved the failing line: new instance
        frames.append(frame)
    event = {
        "service": template["service"],
        "environment": template["environment"],
        "event_type": template["event_type"],
        "event_name": template["event_name"],
        "event_data": {
            "message": template["message"].format(word=word, n=n),
            "raw_data": {"frames": frames, "variant": template["variant"]},
        },
        "extra_args": {"request_id": f"{rng.getrandbits(64):016x}", "host": f"web-{rng.randint(1, 8)}"},
        "configurable_filters": FILTERS,
        "configurable_groupings": ["count_by_message"],
    }
    if timestamp is not None:
        event["timestamp"] = timestamp.strftime("%Y-%m-%d %H:%M:%S")
    return event


def zipf_weights(count: int, exponent: float = 1.1) -> list[float]:
    return [1 / (rank**exponent) for rank in range(1, count + 1)]


def demo_events(bases: int, occurrences: int, days: float, seed: int = 11) -> list[dict]:
    """`occurrences` events over `bases` bases (Zipf popularity), spread over the last `days` days."""
    rng = random.Random(seed)
    templates = make_base_templates(bases)
    now = datetime.now(UTC)
    chosen = rng.choices(templates, weights=zipf_weights(bases), k=occurrences - bases) + templates
    return [make_event(t, rng, now - timedelta(seconds=rng.random() * days * 86400)) for t in chosen]
