"""Variant parameters and the override merge of SPEC §2, as pure functions over plain dicts."""

import copy
import math
from dataclasses import dataclass
from decimal import Decimal

from experiments_app import jsonlimits
from experiments_app.errors import ValidationFailed


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str  # "string", "number", "integer", "choice"
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple = ()

    def describe(self):
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "string":
            return f"a string of {self.minimum:,.0f} to {self.maximum:,.0f} characters"
        low = "greater than" if self.exclusive_minimum else "at least"
        noun = "an integer" if self.kind == "integer" else "a number"
        return f"{noun} {low} {written(self.minimum)} and at most {written(self.maximum)}"


def written(number):
    """A number as people write it: 1000000 → "1,000,000" (not 1e+06), 0.00001 → "0.00001" (not 1e-05)."""
    if float(number).is_integer():
        return f"{int(number):,}"
    return format(Decimal(repr(float(number))), ",f")


PARAMETERS = {
    p.name: p
    for p in (
        Parameter("system", "string", 1, 20_000),
        Parameter("temperature", "number", 0, 2),
        Parameter("top_p", "number", 0, 1, exclusive_minimum=True),
        Parameter("max_tokens", "integer", 1, 1_000_000),
        Parameter("model", "string", 1, 200),
        Parameter("verbosity", "choice", choices=("low", "medium", "high")),
    )
}

PARAMETER_NAMES = list(PARAMETERS)


def parameter_error(parameter, value):
    """Return why `value` is not valid for `parameter`, or None when it is."""
    spec = PARAMETERS.get(parameter)
    if spec is None:
        return f"Unknown parameter {parameter!r}; expected one of {', '.join(PARAMETERS)}."
    if spec.kind == "choice":
        return None if value in spec.choices else f"Must be {spec.describe()}."
    if spec.kind == "string":
        if not isinstance(value, str) or not (spec.minimum <= len(value) <= spec.maximum):
            return f"Must be {spec.describe()}."
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"Must be {spec.describe()}."
    if spec.kind == "integer" and not isinstance(value, int):
        return f"Must be {spec.describe()}."
    if isinstance(value, float) and not math.isfinite(value):
        return f"Must be {spec.describe()}."
    too_low = value <= spec.minimum if spec.exclusive_minimum else value < spec.minimum
    if too_low or value > spec.maximum:
        return f"Must be {spec.describe()}."
    return None


# A config key this close to a parameter's name is a typo of it, not a key of the application's own.
TYPO_DISTANCE = 2


def edit_distance(a, b):
    """Levenshtein distance (insertions, deletions, substitutions), two rows at a time."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def typo_error(key):
    """ "did you mean temperature?" for a key within TYPO_DISTANCE of a parameter's name (not the name itself); else None.

    Other keys pass through unvalidated: the application may use its own (see `unvalidated_keys`)."""
    if key in PARAMETERS or not isinstance(key, str):
        return None
    close = sorted((edit_distance(key.lower(), name), name) for name in PARAMETERS)
    distance, name = close[0]
    return f"Unknown parameter {key!r}: did you mean {name}?" if distance <= TYPO_DISTANCE else None


def unvalidated_keys(config, *, nested=True):
    """Keys passed through without a check: `step.key` of a baseline config (or `key` of a step's config)."""
    if not isinstance(config, dict):
        return []
    if not nested:
        return sorted(key for key in config if key not in PARAMETERS)
    return sorted(f"{step}.{key}" for step, params in config.items() if isinstance(params, dict) for key in params if key not in PARAMETERS)


def validate_value(parameter, value, *, field="value"):
    """Raise ValidationFailed naming `field` unless `value` is valid for `parameter`."""
    message = parameter_error(parameter, value)
    if message:
        raise ValidationFailed({("parameter" if parameter not in PARAMETERS else field): message})


def validate_config(config, steps):
    """Check a baseline config: a dict of in-scope step ids to dicts of parameters.

    Parameters of the table are checked against it; a key within edit distance 2 of one is
    refused as a typo ("did you mean temperature?"); other keys a step's production config
    carries are kept as they are (the application may use them).
    """
    if not isinstance(config, dict):
        raise ValidationFailed({"config": "Must be an object mapping step external ids to parameters."})
    errors = jsonlimits.field_errors("config", config)
    for step, params in config.items():
        if step not in steps:
            errors[f"config.{step}"] = f"{step!r} is not an inference step in this experiment's scope."
            continue
        if not isinstance(params, dict):
            errors[f"config.{step}"] = "Must be an object of parameters."
            continue
        for name, value in params.items():
            message = parameter_error(name, value) if name in PARAMETERS else typo_error(name)
            if message:
                errors[f"config.{step}.{name}"] = message
    if errors:
        raise ValidationFailed(errors)


def merge_overrides(base, *layers):
    """Apply layers of {step: {parameter: value}} onto `base`, later layers winning.

    Returns a new dict; the inputs are not changed. A layer naming a step that the
    base does not hold is a conflict (the step is out of scope) and raises.
    """
    merged = copy.deepcopy(base)
    for layer in layers:
        for step, params in layer.items():
            if step not in merged:
                raise ValidationFailed({"inference_step": f"{step!r} is not in the experiment's scope."})
            merged[step].update(copy.deepcopy(params))
    return merged


def change_layer(step, parameter, value):
    return {step: {parameter: value}}


def effective_config(baseline_config, changes):
    """The effective config: the baseline with each (step, parameter, value) change applied, root first."""
    return merge_overrides(baseline_config, *(change_layer(*change) for change in changes))


def inherited_value(baseline_config, changes, step, parameter):
    """The value a new child of the variant with `changes` would inherit (None when unset)."""
    return effective_config(baseline_config, changes).get(step, {}).get(parameter)


def prefill_config(current, production_configs):
    """The baseline config for a new scope: keep what is set for steps still in scope,
    prefill new steps from their production config."""
    return {
        step: copy.deepcopy(current[step]) if step in current else copy.deepcopy(production or {})
        for step, production in production_configs.items()
    }
