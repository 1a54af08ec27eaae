# Sidelight-Erzähler, Deutsch: was Entwickler und Prüfer lesen. Zahlen sind erwünscht.

dev-decision = Entscheidung: { $has_outcome ->
    [yes] { $outcome } ({ $favourable ->
        [yes] günstig
       *[no] ungünstig
    }).
   *[no] { $favourable ->
        [yes] günstig.
       *[no] ungünstig.
    }
}

dev-prediction = Modellvorhersage { $prediction }; Surrogat-Vorhersage { $surrogate } (Surrogat-Version { $version }, lokaler Fehler { $local_error }, R² auf zurückgehaltenen Daten { $r2 }).

dev-base = Basiswert { $base }, Beiträge im { $space ->
    [logit] Logit-Raum
   *[output] Ausgaberaum
}.

dev-pushed-up = Erhöhten die Vorhersage ({ $count }): { $items }.
dev-pushed-down = Senkten die Vorhersage ({ $count }): { $items }.
dev-no-effect = Ohne Einfluss ({ $count }): { $items }.

dev-attribution = { $feature } [{ $name }] = { $value } ({ $contribution }){ $visibility ->
    [protected] {" "}[geschützt]
    [hidden] {" "}[für Kunden nicht sichtbar]
   *[shown] {""}
}

dev-next-step = Kontrafaktische Änderung: { $changes }; { $reaches ->
    [yes] erreicht das Ziel.
   *[no] erreicht das Ziel nicht.
}

dev-step-change = { $feature } [{ $name }] { $from } → { $to }

dev-fidelity = { $level ->
    [withhold] Die lokale Genauigkeit des Surrogats ist zu gering: Kunden erhalten für diese Zeile keine Erklärung.
   *[caveat] Die lokale Genauigkeit des Surrogats ist schwach: Kunden erhalten diese Erklärung nur mit einem Warnhinweis.
}

## Prüfer

audit-record = Datensatz { $id }.
audit-consent = Einwilligung: { $consent }.
audit-storage = Speicherung: { $facts }.
audit-none = Zu diesem Datensatz wurden keine Angaben zu Einwilligung und Speicherung übergeben.
