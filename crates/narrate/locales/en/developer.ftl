# Sidelight narrator, English: what developers and auditors read. Figures are welcome.

# $favourable: yes | no; $has_outcome: yes | no; $outcome: the route's word for the result.
dev-decision = Decision: { $has_outcome ->
    [yes] { $outcome } ({ $favourable ->
        [yes] favourable
       *[no] unfavourable
    }).
   *[no] { $favourable ->
        [yes] favourable.
       *[no] unfavourable.
    }
}

# $prediction, $surrogate, $local_error, $r2: formatted numbers; $version: the
# surrogate version.
dev-prediction = Model prediction { $prediction }; surrogate prediction { $surrogate } (surrogate version { $version }, local error { $local_error }, held-out R² { $r2 }).

# $base: formatted number; $space: logit | output.
dev-base = Base value { $base }, contributions in { $space ->
    [logit] logit space
   *[output] output space
}.

# $count, $items: the attributions, already joined.
dev-pushed-up = Pushed the prediction up ({ $count }): { $items }.
dev-pushed-down = Pushed the prediction down ({ $count }): { $items }.
dev-no-effect = No effect ({ $count }): { $items }.

# One attribution. $feature: display name; $name: the payload name; $value: the value;
# $contribution: signed number; $visibility: shown | hidden | protected.
dev-attribution = { $feature } [{ $name }] = { $value } ({ $contribution }){ $visibility ->
    [protected] {" "}[protected]
    [hidden] {" "}[not shown to customers]
   *[shown] {""}
}

# $changes: the changes, already joined; $reaches: yes | no.
dev-next-step = Counterfactual: { $changes }; { $reaches ->
    [yes] reaches the target.
   *[no] does not reach the target.
}

# One change. $feature, $name, $from, $to.
dev-step-change = { $feature } [{ $name }] { $from } → { $to }

# $level: caveat | withhold.
dev-fidelity = { $level ->
    [withhold] Local fidelity is too low: customers get no explanation for this row.
   *[caveat] Local fidelity is poor: customers get this explanation only with a caveat.
}

## Auditors

# $id: the record id.
audit-record = Record { $id }.
# $consent: the consent state, as the proxy words it.
audit-consent = Consent: { $consent }.
# $facts: the storage facts, already joined.
audit-storage = Storage: { $facts }.
# No variables.
audit-none = No consent or storage facts were given for this record.
