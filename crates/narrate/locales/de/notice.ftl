# Sidelight-Erzähler, Deutsch: der Transparenzhinweis einer Route
# (`GET /v1/notice/{route}`) und die Antworten auf die Anfechtung einer Entscheidung.

## Der Hinweis

notice-default-title = Wie ein automatisiertes Modell an dieser Entscheidung mitwirkt
notice-default-purpose = Ein automatisiertes Modell hilft uns, über Anfragen wie Ihre zu entscheiden. Diese Seite sagt, was es verwendet, was wir aufbewahren und was Sie tun können.
notice-uses-heading = Welche Angaben es verwendet
notice-uses = Das Modell erhält diese Angaben aus Ihrer Anfrage:
notice-uses-hidden = { $count ->
    [one] und eine weitere technische Angabe.
   *[other] und { $count } weitere technische Angaben.
}
notice-protected-heading = Sensible Angaben
notice-protected = Ihre Erklärung nennt die folgenden Angaben nie, und sie werden nicht zur Erklärung von Entscheidungen verwendet:
notice-protected-given = Einige dieser Angaben können dem Modell mit Ihrer Anfrage übermittelt werden.
notice-fairness-monitored = Wir prüfen regelmäßig, dass Entscheidungen für keine Gruppe von Menschen, die diese Angaben beschreiben, ungünstiger ausfallen.
notice-fairness-unmonitored = Für diese Gruppen gibt es bei diesem Dienst keine automatische Prüfung der Entscheidungen.
notice-fairness-fair = Die letzte Prüfung ({ $date }) fand keine Gruppe, die deutlich ungünstiger behandelt wurde als die anderen.
notice-fairness-disparity = Die letzte Prüfung ({ $date }) fand eine Gruppe, die ungünstiger behandelt wurde als die anderen.
notice-fairness-reviewed = Entscheidungen über Menschen in einer Gruppe, die ungünstiger behandelt wurde, prüft eine Person.
notice-fairness-none = Es wurde noch keine Prüfung abgeschlossen.
notice-reasons-heading = Gründe, die wir nennen können
notice-reasons = Wird eine Anfrage abgelehnt, nennen wir Ihnen die Hauptgründe aus dieser Liste:
notice-explanations = Zu jeder Entscheidung erhalten Sie die Hauptgründe in verständlichen Worten und, wo möglich, was Sie ändern könnten.
notice-record-heading = Was wir aufbewahren
notice-record-kept = Wir bewahren zu jeder Entscheidung auf, worauf sie beruhte und welche Erklärung Sie erhielten, { $days ->
    [one] einen Tag lang
   *[other] { $days } Tage lang
}, und löschen diese Aufzeichnung dann.
notice-record-kept-until-erased = Wir bewahren zu jeder Entscheidung auf, worauf sie beruhte und welche Erklärung Sie erhielten, bis Sie uns um Löschung bitten.
notice-record-minimised = { $count ->
    [one] Eine Angabe wird nur verkürzt oder pseudonymisiert aufbewahrt.
   *[other] { $count } Angaben werden nur verkürzt oder pseudonymisiert aufbewahrt.
}
notice-record-encrypted = Die Aufzeichnungen sind verschlüsselt gespeichert und gegen Veränderung geschützt.
notice-record-none = Dieser Dienst bewahrt keine Aufzeichnungen über Entscheidungen auf.
notice-choices-heading = Ihre Wahl
notice-consent-default-granted = Sofern Sie nichts anderes sagen, kann Ihre Anfrage auch dazu dienen, die Erklärung von Entscheidungen zu verbessern.
notice-consent-default-denied = Ihre Anfrage dient nur mit Ihrer Zustimmung dazu, die Erklärung von Entscheidungen zu verbessern.
notice-consent-how = Sie können diese Wahl mit Ihrer Anfrage treffen und uns jederzeit bitten, Ihre Aufzeichnungen zu löschen.
notice-access = Sie können eine Kopie aller Entscheidungen über Sie mit ihren Erklärungen verlangen.
notice-review-heading = Eine Person kann Ihre Entscheidung prüfen
notice-review-rules = Manche Entscheidungen prüft eine Person, zum Beispiel wenn das Modell unsicher ist.
notice-contest = Sie können eine Entscheidung innerhalb von { $days ->
    [one] einem Tag
   *[other] { $days } Tagen
} mit der erhaltenen Referenz anfechten. Eine Person prüft sie dann, und Sie können das Ergebnis verfolgen.
notice-contest-offline = Wenn eine Person Ihre Entscheidung prüfen soll, wenden Sie sich an uns.
notice-generated = Dieser Hinweis wurde am { $date } aus den aktuellen Einstellungen des Dienstes erstellt.

## Anfechtung einer Entscheidung

contest-received = Wir haben Ihre Anfechtung erhalten. Eine Person prüft die Entscheidung, und Sie können das Ergebnis mit derselben Referenz verfolgen.
contest-pending = Eine Person prüft die Entscheidung.
contest-confirmed = Eine Person hat die Entscheidung geprüft und bestätigt.
contest-overridden = Eine Person hat die Entscheidung geprüft und geändert.
contest-unknown = Zu dieser Referenz finden wir keine Entscheidung.
contest-closed = Diese Entscheidung kann hier nicht mehr angefochten werden: eine Anfechtung ist innerhalb von { $days ->
    [one] einem Tag
   *[other] { $days } Tagen
} möglich.
contest-erased = Die Aufzeichnung dieser Entscheidung wurde gelöscht.
contest-already = Diese Entscheidung wurde bereits angefochten.
contest-unavailable = Diese Entscheidung kann hier nicht angefochten werden. Bitte wenden Sie sich an uns.
contest-reason-needed = Bitte sagen Sie uns in höchstens { $max } Zeichen, warum Sie die Entscheidung anfechten.
contest-not-contested = Diese Entscheidung wurde nicht angefochten.

## Die druckbare Antwort auf ein Auskunftsersuchen

access-title = Entscheidungen über { $subject }
access-summary = { $count ->
    [one] Eine Aufzeichnung, Stand { $date }.
   *[other] { $count } Aufzeichnungen, Stand { $date }.
}
access-truncated = Hier stehen nur die ersten Aufzeichnungen; fragen Sie uns nach den übrigen.
access-when = Wann
access-service = Dienst
access-consent = Einwilligung
access-request = Ihre Anfrage, wie aufgezeichnet
access-explanation = Erklärung
access-no-explanation = Es wurde keine gegeben ({ $why }).
access-reasons = Genannte Gründe
access-information = Angaben, auf die sich die Erklärung bezieht
access-review = Prüfung
access-by-you = durch Sie
access-by-reviewer = durch eine prüfende Person
access-outcome = Gemeldetes Ergebnis
access-erased = Diese Aufzeichnung wurde am { $date } gelöscht.
