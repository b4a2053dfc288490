"""Fixed statements' rows as the ORM gives them.

The engine's busiest statements are written once per database vendor instead of compiled by the
ORM on every call (the compile was most of their CPU). Their rows are turned into the values the
ORM's compiler would return with the same converters it applies.
"""

import functools


def concrete_fields(model, leave_out=()):
    return tuple(field for field in model._meta.concrete_fields if field.name not in leave_out)


@functools.lru_cache(maxsize=256)
def converters(fields, wrapper):
    """[(position, column, functions)] for those of `fields` whose values the ORM's compiler
    converts on `wrapper` (one connection per thread): the backend's converters, then the field's."""
    found = []
    for position, field in enumerate(fields):
        column = field.get_col(field.model._meta.db_table)  # a foreign key's column has its target's type
        functions = wrapper.ops.get_db_converters(column) + column.get_db_converters(wrapper)
        if functions:
            found.append((position, column, functions))
    return found


def converted(fields, values, wrapper):
    """A row's values as the ORM would give them (JSON decoded, secrets decrypted, SQLite's
    datetime and UUID text parsed)."""
    values = list(values)
    for position, column, functions in converters(fields, wrapper):
        for function in functions:
            values[position] = function(values[position], column, wrapper)
    return values


def instance(model, fields, values, wrapper):
    """A model instance from a row of `fields`, as a queryset would load it."""
    return model.from_db(wrapper.alias, [field.attname for field in fields], converted(fields, values, wrapper))
