"""A class filter (``options.classes``: ids or names) as the class ids of one model."""

from __future__ import annotations

from vocab.errors import bad_request


def class_ids(classes: list[int | str], class_names: dict[int, str]) -> list[int]:
    """Class filter as ids: ids pass through if the model has them, names are looked up (case-insensitive)."""
    by_name = {name.lower(): i for i, name in class_names.items()}
    ids: list[int] = []
    for item in classes:
        if isinstance(item, int):
            if item not in class_names:
                raise bad_request(f"options.classes: class id {str(item)[:12]} is not in this model "
                                  f"(0..{len(class_names) - 1})")
            ids.append(item)
        elif item.isascii() and item.isdigit() and len(item) <= 9 and int(item) in class_names:
            ids.append(int(item))
        elif item.lower() in by_name:
            ids.append(by_name[item.lower()])
        else:
            raise bad_request(f"options.classes: {item[:100]!r} is not a class of this model")
    return sorted(set(ids))
