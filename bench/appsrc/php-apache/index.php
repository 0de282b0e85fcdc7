<?php
// `/` answers without touching lib/; `?page=report` includes lib/report.php and uses extensions.
$page = $_GET['page'] ?? '';
if ($page === 'report') {
    include __DIR__ . '/lib/report.php';
    echo render_report(['alpha' => 3, 'beta' => 5, 'Grüße' => 7]);
    exit;
}
echo "php ok\n";
