"""The demo's tasks: what load_demo imports and the answers the simulated model 'knows'."""

CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
    ("Brazil", "Brasília"), ("Egypt", "Cairo"), ("Norway", "Oslo"), ("Peru", "Lima"), ("Vietnam", "Hanoi"),
    ("Morocco", "Rabat"), ("Turkey", "Ankara"), ("Chile", "Santiago"), ("Poland", "Warsaw"), ("Thailand", "Bangkok"),
    ("Nigeria", "Abuja"), ("Portugal", "Lisbon"), ("Mongolia", "Ulaanbaatar"), ("New Zealand", "Wellington"), ("Ghana", "Accra"),
]  # fmt: skip


def build_tasks():
    tasks = []
    for country, capital in CAPITALS:
        slug = country.lower().replace(" ", "-")
        tasks.append(
            {"external_id": f"capital-{slug}", "name": f"Capital of {country}", "tags": ["geography"],
             "input": {"question": f"What is the capital of {country}?", "category": "capital"}, "expected": capital}
        )  # fmt: skip
    for n in range(15):
        a, b = 17 + 13 * n, 29 + 7 * n * n % 97
        tasks.append(
            {"external_id": f"sum-{a}-{b}", "name": f"{a} + {b}", "tags": ["arithmetic"],
             "input": {"question": f"What is {a} + {b}?", "category": "arithmetic"}, "expected": a + b}
        )  # fmt: skip
    for n in range(15):
        hours = 2 + 3 * n
        tasks.append(
            {"external_id": f"minutes-in-{hours}h", "name": f"Minutes in {hours} hours", "tags": ["conversion"],
             "input": {"question": f"How many minutes are in {hours} hours?", "category": "conversion"}, "expected": 60 * hours}
        )  # fmt: skip
    return tasks


TASKS = build_tasks()
ANSWERS = {task["external_id"]: task["expected"] for task in TASKS}
