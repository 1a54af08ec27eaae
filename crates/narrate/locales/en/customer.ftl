# Sidelight narrator, English: what a customer reads.
#
# Customer text carries no figures: no values, no scores, no contributions. Only the next
# step may show the target value of a feature the person can change.

# $favourable: yes | no; $has_outcome: yes | no; $outcome: the route's word for the
# result ("approved"), empty when the route gives none.
customer-decision = { $has_outcome ->
    [yes] Decision: { $outcome }.
   *[no] { $favourable ->
        [yes] The result was in your favour.
       *[no] The result was not in your favour.
    }
}

# $count: how many reasons; $reasons: the reasons, already joined.
customer-reasons = { $count ->
    [one] The main reason for this result: { $reasons }.
   *[other] The main reasons for this result: { $reasons }.
}

# One reason. $your: the feature as "your …"; $feature: its name;
# $comparison: higher | lower | typical | none (against most people's values);
# $more, $less: the feature's comparatives ("longer", "shorter");
# $effect: for | against (the person's interest).
customer-reason = { $your }{ $comparison ->
        [higher] {" "}({ $more } than for most applicants)
        [lower] {" "}({ $less } than for most applicants)
        [typical] {" "}(similar to most applicants)
       *[none] {""}
    } { $effect ->
        [for] counted in your favour
       *[against] counted against you
    }

# $effect: for | against.
customer-other-factors = { $effect ->
    [for] Other factors together counted in your favour.
   *[against] Other factors together counted against you.
}

# No variables.
customer-no-reasons = No single factor that we can name stood out; many small factors together led to this result.

# No variables. Shown when the explanation is only an approximation for this case.
customer-caveat = Please treat this explanation with caution: it comes from a simplified copy of the decision model, which matches the real decision only roughly in your case.

# $count: how many changes; $changes: the changes, already joined.
customer-next-step = { $changes } would likely change the decision.

# One change. $kind: more | less | set; $phrase: the feature's "a longer …" phrase;
# $feature: its name; $value: the target value.
customer-step-change = { $kind ->
    [set] a change of { $feature } to { $value }
   *[other] { $phrase } (about { $value })
}

# Ranking routes: why an item was recommended. $has_reasons: yes | no; $reasons: the
# reasons, already joined (about the customer first, then about the item).
customer-recommended = { $has_reasons ->
    [yes] Recommended because { $reasons }.
   *[no] Recommended: many small factors together placed it here.
}

# A reason about the customer. $your: the feature as "your …"; $feature: its name. A
# feature's own `.because` clause ("you often buy outdoor gear") replaces it.
customer-recommended-you = { $your } counted in its favour

# A reason about the item. $feature: its name. A feature's own `.because` clause ("this
# tent is light") replaces it.
customer-recommended-item = its { $feature } counted in its favour

# Why one item is ranked above another. $item: how the customer knows the higher item;
# $other: the lower one; $has_reasons: yes | no; $reasons: the reasons, already joined.
customer-contrast = { $has_reasons ->
    [yes] { $item } is ranked above { $other } mainly because { $reasons }.
   *[no] { $item } is ranked above { $other } through many small differences together.
}

# One reason of a contrast. $feature: the item feature's name; $comparison: more | less
# | other (its value in this item against the other's); $more, $less: its comparatives.
customer-contrast-reason = { $comparison ->
    [more] its { $feature } is { $more }
    [less] its { $feature } is { $less }
   *[other] its { $feature } suits you better
}
