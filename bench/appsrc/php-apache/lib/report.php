<?php
// Included only by the report page: ctype, iconv (a gconv module for ISO-8859-15) and json.
function render_report(array $rows): string
{
    $out = [];
    foreach ($rows as $name => $n) {
        $latin = iconv('UTF-8', 'ISO-8859-15', $name);
        $out[] = [
            'name' => $name,
            'alpha' => ctype_alpha($name),
            'latin_bytes' => strlen($latin),
            'n' => $n,
        ];
    }
    return "report: " . json_encode($out, JSON_UNESCAPED_UNICODE) . "\n";
}
