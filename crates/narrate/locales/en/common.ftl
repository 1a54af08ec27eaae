# Sidelight narrator, English: words shared by every audience.
#
# Every message here may be overridden by a business in its own .ftl files; the
# variables a message may use are listed in its comment. A message may use fewer.

## Values

# No variables.
value-yes = yes
value-no = no
value-missing = missing
# $text: a categorical level or other text value.
value-quoted = “{ $text }”
# $number: the formatted number; $currency: the configured currency ("DM", "EUR").
value-money = { $number } { $currency }
# $number: the formatted number.
value-percent = { $number }%
# $number: the formatted number; $unit: the configured unit ("years").
value-unit = { $number } { $unit }
# $count: the number, for plural rules.
unit-days = { $count ->
    [one] day
   *[other] days
}
unit-months = { $count ->
    [one] month
   *[other] months
}
unit-years = { $count ->
    [one] year
   *[other] years
}
# The word joining the last two items of a list. No variables.
list-and = and

## How a feature is named when no `feature-<name>` message describes it.

# $feature: the display name.
feature-default-your = your { $feature }
# No variables: the comparative for a larger or a smaller value.
feature-default-more = higher
feature-default-less = lower
# $feature: the display name.
feature-default-step-more = a higher { $feature }
feature-default-step-less = a lower { $feature }
