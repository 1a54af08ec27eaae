# The demo's outdoor-shop recommender in English: its features' names and the reasons a
# customer reads ("Recommended because you often buy outdoor gear, and it is light").
# A feature's `.because` is the whole reason when that feature placed the item high.

feature-context_outdoor_share = outdoor purchases
    .your = your share of outdoor purchases
    .because = you often buy outdoor gear
feature-context_budget = budget
    .your = your budget
    .because = it fits your budget
feature-context_member = membership
    .your = your membership
    .because = members get a better price on it
feature-context_age = age
feature-item_category = kind of product
    .because = it is the kind of gear you buy
feature-item_price = price
    .more = higher
    .less = lower
    .because = its price suits you
feature-item_weight_kg = weight
    .more = heavier
    .less = lighter
    .because = it is light to carry
feature-item_rating = rating
    .more = better
    .less = worse
    .because = other customers rate it highly
feature-item_tier = range

custom-notice-shop-title = How we recommend products
custom-notice-shop-purpose = An automated model orders the products we show you by how well they are likely to suit you; this page says what it uses and what we keep.
