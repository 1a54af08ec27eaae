# Sidelight-Erzähler, Deutsch: was Kundinnen und Kunden lesen. Keine Zahlen, außer dem
# Zielwert eines veränderbaren Merkmals im nächsten Schritt.

customer-decision = { $has_outcome ->
    [yes] Entscheidung: { $outcome }.
   *[no] { $favourable ->
        [yes] Das Ergebnis fiel zu Ihren Gunsten aus.
       *[no] Das Ergebnis fiel nicht zu Ihren Gunsten aus.
    }
}

customer-reasons = { $count ->
    [one] Der wichtigste Grund für dieses Ergebnis: { $reasons }.
   *[other] Die wichtigsten Gründe für dieses Ergebnis: { $reasons }.
}

customer-reason = { $your }{ $comparison ->
        [higher] {" "}({ $more } als bei den meisten Antragstellenden)
        [lower] {" "}({ $less } als bei den meisten Antragstellenden)
        [typical] {" "}(ähnlich wie bei den meisten Antragstellenden)
       *[none] {""}
    } { $effect ->
        [for] sprach für Sie
       *[against] sprach gegen Sie
    }

customer-other-factors = { $effect ->
    [for] Weitere Faktoren sprachen zusammengenommen für Sie.
   *[against] Weitere Faktoren sprachen zusammengenommen gegen Sie.
}

customer-no-reasons = Kein einzelner Faktor, den wir nennen können, gab den Ausschlag; viele kleine Faktoren zusammen führten zu diesem Ergebnis.

customer-caveat = Bitte betrachten Sie diese Erklärung mit Vorsicht, denn sie beruht auf einer vereinfachten Nachbildung des Entscheidungsmodells, die die tatsächliche Entscheidung in Ihrem Fall nur ungefähr wiedergibt.

customer-next-step = { $changes } { $count ->
    [one] würde
   *[other] würden
} die Entscheidung wahrscheinlich ändern.

customer-step-change = { $kind ->
    [set] eine Änderung bei „{ $feature }“ auf { $value }
   *[other] { $phrase } (etwa { $value })
}

customer-recommended = { $has_reasons ->
    [yes] Empfohlen, weil { $reasons }.
   *[no] Empfohlen: viele kleine Faktoren zusammen brachten es hierher.
}

customer-recommended-you = { $your } dafür sprach

customer-recommended-item = das Merkmal „{ $feature }“ dieses Artikels dafür sprach

customer-contrast = { $has_reasons ->
    [yes] { $item } steht vor { $other }, vor allem weil { $reasons }.
   *[no] { $item } steht vor { $other }, durch viele kleine Unterschiede zusammen.
}

customer-contrast-reason = { $comparison ->
    [more] es beim Merkmal „{ $feature }“ { $more } ist
    [less] es beim Merkmal „{ $feature }“ { $less } ist
   *[other] es beim Merkmal „{ $feature }“ besser passt
}
