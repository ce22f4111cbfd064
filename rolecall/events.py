"""The event vocabulary shared by training data and the online API."""

EVENT_TYPES = ("view", "click", "cart", "purchase", "filter", "login",
               "logout")
# Index 0 is reserved for padding and unknown types.
EVENT_INDEX = {name: i + 1 for i, name in enumerate(EVENT_TYPES)}
N_EVENT_TYPES = len(EVENT_TYPES) + 1
# Events that name an item and so move the session's embedding.
ITEM_EVENTS = frozenset({"view", "click", "cart", "purchase"})
